"""Tests of duration parsing (`?delay=`) and of the duration and timestamp forms the admin API prints."""

from __future__ import annotations

import pytest

from ingress.durations import format_friendly_ms, format_rfc3339_ms, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "milliseconds"),
    [
        ("0", 0),
        ("1500", 1500),
        ("500ms", 500),
        ("10s", 10_000),
        ("1m", 60_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("60sec", 60_000),
        ("60 sec", 60_000),
        ("1h 30m", 5_400_000),
        ("1h, 30m", 5_400_000),
        ("1.5s", 1_500),
        ("2 days", 172_800_000),
        ("PT10S", 10_000),
        ("pt0.5s", 500),
        ("PT1M30S", 90_000),
        ("P1DT2H", 93_600_000),
        ("P1W", 604_800_000),
    ],
)
def test_accepted_forms(text: str, milliseconds: int) -> None:
    assert parse_duration_ms(text) == milliseconds


@pytest.mark.parametrize("text", ["", "soon", "-5s", "10 parsecs", "P", "PT", "P1Y", "10s later", "1e3"])
def test_rejected_forms_name_the_accepted_ones(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration_ms(text)
    assert "e.g." in str(raised.value) or "ISO-8601" in str(raised.value)


def test_absurdly_long_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="100 years"):
        parse_duration_ms("1000000d")


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [(0, "0s"), (500, "500ms"), (60_000, "1m"), (86_400_000, "1d"), (5_400_000, "1h 30m"), (90_061_001, "1d 1h 1m 1s 1ms")],
)
def test_friendly_printing(milliseconds: int, text: str) -> None:
    assert format_friendly_ms(milliseconds) == text
    assert parse_duration_ms(text) == milliseconds


def test_rfc3339() -> None:
    assert format_rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_rfc3339_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
