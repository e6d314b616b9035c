"""Parses and prints durations and timestamps the way Restate's HTTP APIs write them.

Accepted duration forms (the `?delay=` of a send): bare milliseconds (`500`),
friendly spans (`500ms`, `10s`, `1m`, `1h 30m`, `60 sec`, `2 days`) and
ISO-8601 durations (`PT10S`, `P1DT2H`, `PT0.5S`). Printed durations use the
compact friendly form (`1d`, `1h 30m`, `500ms`); timestamps RFC 3339 in UTC.
"""

from __future__ import annotations

import datetime
import re

_UNIT_MS: dict[str, int] = {}
for _names, _ms in (
    (("ms", "msec", "msecs", "milli", "millis", "millisecond", "milliseconds"), 1),
    (("s", "sec", "secs", "second", "seconds"), 1_000),
    (("m", "min", "mins", "minute", "minutes"), 60_000),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000),
    (("d", "day", "days"), 86_400_000),
    (("w", "wk", "wks", "week", "weeks"), 7 * 86_400_000),
):
    for _name in _names:
        _UNIT_MS[_name] = _ms

_FRIENDLY_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*,?")
_ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_PRINT_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))

MAX_DURATION_MS = 100 * 365 * 86_400_000
"""Durations above about 100 years are rejected as mistakes."""


def parse_duration_ms(text: str) -> int:
    """Milliseconds of a duration in any accepted form; raises ValueError naming the accepted forms."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty duration; expected e.g. '500ms', '10s', 'PT10S' or a number of milliseconds")
    if stripped.isdigit():
        return _bounded(int(stripped), text)
    if stripped[0] in "pP":
        return _bounded(_parse_iso(stripped, text), text)
    return _bounded(_parse_friendly(stripped, text), text)


def _parse_iso(text: str, original: str) -> int:
    match = _ISO.fullmatch(text)
    if match is None or not any(match.groupdict().values()) or text.upper().endswith("T"):
        raise ValueError(f"{original!r} is not an ISO-8601 duration of weeks, days, hours, minutes and seconds (e.g. 'PT10S', 'P1DT2H')")
    parts = match.groupdict()
    total = 0.0
    for group, unit in (("w", "w"), ("d", "d"), ("h", "h"), ("m", "m"), ("s", "s")):
        if parts[group] is not None:
            total += float(parts[group]) * _UNIT_MS[unit]
    return round(total)


def _parse_friendly(text: str, original: str) -> int:
    position = 0
    total = 0.0
    while position < len(text):
        match = _FRIENDLY_PART.match(text, position)
        if match is None or match.group(2).lower() not in _UNIT_MS:
            raise ValueError(
                f"{original!r} is not a duration; expected e.g. '500ms', '10s', '1m', '1h 30m', 'PT10S' or a number of milliseconds"
            )
        total += float(match.group(1)) * _UNIT_MS[match.group(2).lower()]
        position = match.end()
    return round(total)


def _bounded(milliseconds: int, original: str) -> int:
    if milliseconds > MAX_DURATION_MS:
        raise ValueError(f"duration {original!r} is longer than {MAX_DURATION_MS} ms (about 100 years)")
    return milliseconds


def format_friendly_ms(milliseconds: int) -> str:
    """A compact friendly span: `1d`, `1h 30m`, `500ms`, `0s`."""
    if milliseconds <= 0:
        return "0s"
    parts = []
    remaining = milliseconds
    for unit, size in _PRINT_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def format_rfc3339_ms(epoch_ms: int) -> str:
    """An RFC 3339 UTC timestamp with milliseconds, e.g. `2025-01-31T12:00:00.123Z`."""
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
