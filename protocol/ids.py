"""Formats and parses invocation ids and awakeable ids exactly as Restate does.

Invocation id string: ``"inv_1"`` + base62(partition key, 11 chars) +
base62(uuid, 22 chars), 38 characters. The base62 alphabet is ``0-9a-z-A-Z``;
each number is byte-swapped (Restate encodes ``n.to_be()`` on a little-endian
machine) before it is written, left-padded with ``'0'``, so the string is
opaque: its characters do not sort by partition key.

Binary form (``StartMessage.id``): 8-byte big-endian partition key followed
by the 16-byte big-endian uuid.

Awakeable id: ``"sign_1"`` + base64url without padding of (binary invocation
id || u32 big-endian signal index). The legacy ``"prom_1"`` form has the same
layout with a journal entry index instead of a signal index.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Final

INVOCATION_ID_PREFIX: Final = "inv_1"
AWAKEABLE_ID_PREFIX: Final = "sign_1"
LEGACY_AWAKEABLE_ID_PREFIX: Final = "prom_1"

PARTITION_KEY_BASE62_CHARS: Final = 11
UUID_BASE62_CHARS: Final = 22
INVOCATION_ID_CHARS: Final = len(INVOCATION_ID_PREFIX) + PARTITION_KEY_BASE62_CHARS + UUID_BASE62_CHARS
INVOCATION_ID_BYTES: Final = 24
UUID_BYTES: Final = 16
AWAKEABLE_ID_BYTES: Final = INVOCATION_ID_BYTES + 4

MAX_PARTITION_KEY: Final = 2**64 - 1
MAX_SIGNAL_INDEX: Final = 2**32 - 1

_BASE62_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE62_VALUE: Final = {char: value for value, char in enumerate(_BASE62_ALPHABET)}
_BASE62_PAIRS: Final = [a + b for a in _BASE62_ALPHABET for b in _BASE62_ALPHABET]  # two digits at a time: half the divisions
_BASE62_PAIR_VALUE: Final = {pair: value for value, pair in enumerate(_BASE62_PAIRS)}
MAX_PARSED_IDS_CACHED: Final = 8192
"""Ids formatted or parsed lately, kept parsed: an invocation's id is read again at every hop (ingress, partition, invoker)."""
_recent_ids: dict[str, InvocationId] = {}
_DERIVE_SEPARATOR: Final = b","
_EXPECTED_FORM: Final = (
    f"expected '{INVOCATION_ID_PREFIX}' followed by {PARTITION_KEY_BASE62_CHARS + UUID_BASE62_CHARS}"
    f" base62 characters [0-9a-zA-Z] ({INVOCATION_ID_CHARS} characters in all)"
)


@dataclass(frozen=True)
class InvocationId:
    """An invocation's identity: the partition key that routes it and a 128-bit uuid."""

    partition_key: int
    uuid: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.partition_key <= MAX_PARTITION_KEY:
            raise ValueError(f"partition_key {self.partition_key} is not a u64")
        if len(self.uuid) != UUID_BYTES:
            raise ValueError(f"uuid has {len(self.uuid)} bytes; expected {UUID_BYTES}")

    def __str__(self) -> str:
        return self.text_on(partition_key_base62(self.partition_key))

    def text_on(self, key_base62: str) -> str:
        """`str(self)` when the characters of its partition key (`partition_key_base62`) are known already: a caller
        that makes many ids on few keys (a subscription's events) writes each key once."""
        text = INVOCATION_ID_PREFIX + key_base62 + _base62_fixed(int.from_bytes(self.uuid, "little"), UUID_BASE62_CHARS)
        _remember(text, self)
        return text

    @classmethod
    def parse(cls, text: str) -> InvocationId:
        """The id written as `text`; raises ValueError naming the expected form."""
        recent = _recent_ids.get(text)
        if recent is not None:
            return recent
        parsed = cls._parse(text)
        _remember(text, parsed)
        return parsed

    @classmethod
    def _parse(cls, text: str) -> InvocationId:
        if not text.startswith(INVOCATION_ID_PREFIX):
            raise ValueError(f"invocation id {text!r} lacks the prefix; {_EXPECTED_FORM}")
        if len(text) != INVOCATION_ID_CHARS:
            raise ValueError(f"invocation id {text!r} has {len(text)} characters; {_EXPECTED_FORM}")
        body = text[len(INVOCATION_ID_PREFIX) :]
        swapped_key = _base62_decode(body[:PARTITION_KEY_BASE62_CHARS], text)
        swapped_uuid = _base62_decode(body[PARTITION_KEY_BASE62_CHARS:], text)
        if swapped_key > MAX_PARTITION_KEY or swapped_uuid >= 2**128:
            raise ValueError(f"invocation id {text!r} encodes a number out of range; {_EXPECTED_FORM}")
        return cls(_byte_swapped(swapped_key, 8), swapped_uuid.to_bytes(UUID_BYTES, "little"))

    def to_bytes(self) -> bytes:
        """The 24-byte binary form: partition key (u64 BE) || uuid."""
        return self.partition_key.to_bytes(8, "big") + self.uuid

    @classmethod
    def from_bytes(cls, data: bytes) -> InvocationId:
        """The id in the 24-byte binary form of StartMessage.id."""
        if len(data) != INVOCATION_ID_BYTES:
            raise ValueError(
                f"binary invocation id has {len(data)} bytes; expected {INVOCATION_ID_BYTES}"
                " (8-byte big-endian partition key then 16-byte uuid)"
            )
        return cls(int.from_bytes(data[:8], "big"), bytes(data[8:]))

    @classmethod
    def random(cls, partition_key: int, now_ms: int | None = None) -> InvocationId:
        """A new id on `partition_key` with a fresh ULID-shaped uuid.

        The ULID is a 48-bit millisecond timestamp (`now_ms`, default the wall
        clock) followed by 80 random bits.
        """
        return cls(partition_key, ulid_bytes(now_ms))


def partition_key_base62(partition_key: int) -> str:
    """The characters of an invocation id that write its partition key (the same in every id on that key)."""
    return _base62_fixed(_byte_swapped(partition_key, 8), PARTITION_KEY_BASE62_CHARS)


def derive_uuid(*parts: bytes | str) -> bytes:
    """A deterministic 16-byte uuid: the first 16 bytes of SHA-256 over the parts joined by ``,``.

    Restate derives idempotent and workflow invocation uuids this way:
    ``derive_uuid("ik", service, [key,] handler, idempotency_key)`` and
    ``derive_uuid("wf", workflow_name, workflow_key)`` (with ``scope`` after the
    tag when the target is scoped). See `idempotent_invocation_uuid` and
    `workflow_invocation_uuid`.
    """
    if not parts:
        raise ValueError("derive_uuid needs at least one part")
    return hashlib.sha256(_joined_parts(parts)).digest()[:UUID_BYTES]


class UuidDeriver:
    """`derive_uuid(*prefix, last)` for many `last` parts after one fixed prefix, which is hashed once."""

    __slots__ = ("_prefix",)

    def __init__(self, *prefix: bytes | str) -> None:
        self._prefix = hashlib.sha256(_joined_parts(prefix) + _DERIVE_SEPARATOR if prefix else b"")

    def derive(self, last: bytes | str) -> bytes:
        digest = self._prefix.copy()
        digest.update(last.encode() if isinstance(last, str) else last)
        return digest.digest()[:UUID_BYTES]


def _joined_parts(parts: tuple[bytes | str, ...]) -> bytes:
    return _DERIVE_SEPARATOR.join(part.encode() if isinstance(part, str) else bytes(part) for part in parts)


def idempotent_invocation_uuid(
    service_name: str,
    handler_name: str,
    idempotency_key: str,
    service_key: str | None = None,
    scope: str | None = None,
) -> bytes:
    """The uuid Restate gives an invocation with an idempotency key."""
    parts: list[str] = ["ik"]
    if scope is not None:
        parts.append(scope)
    parts.append(service_name)
    if service_key is not None:
        parts.append(service_key)
    parts += [handler_name, idempotency_key]
    return derive_uuid(*parts)


def workflow_invocation_uuid(workflow_name: str, workflow_key: str, scope: str | None = None) -> bytes:
    """The uuid Restate gives the run of a workflow (one per workflow key)."""
    parts = ["wf"] if scope is None else ["wf", scope]
    return derive_uuid(*parts, workflow_name, workflow_key)


def format_awakeable_id(invocation_id: InvocationId, signal_index: int) -> str:
    """The ``sign_1`` awakeable id of signal `signal_index` of `invocation_id`."""
    if not 0 <= signal_index <= MAX_SIGNAL_INDEX:
        raise ValueError(f"signal_index {signal_index} is not a u32")
    raw = invocation_id.to_bytes() + signal_index.to_bytes(4, "big")
    return AWAKEABLE_ID_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def parse_awakeable_id(text: str) -> tuple[InvocationId, int]:
    """The invocation id and index in an awakeable id.

    Accepts ``sign_1`` ids (the index is a signal index) and legacy ``prom_1``
    ids (the index is a journal entry index of the pre-V5 journal; see
    `is_legacy_awakeable_id`). Padding is optional. Raises ValueError naming
    the expected form.
    """
    prefix = _awakeable_prefix(text)
    raw = _decode_base64url(text[len(prefix) :], text)
    if len(raw) != AWAKEABLE_ID_BYTES:
        raise ValueError(
            f"awakeable id {text!r} holds {len(raw)} bytes; expected {AWAKEABLE_ID_BYTES} (24-byte invocation id then a 4-byte index)"
        )
    invocation_id = InvocationId.from_bytes(raw[:INVOCATION_ID_BYTES])
    return invocation_id, int.from_bytes(raw[INVOCATION_ID_BYTES:], "big")


def is_legacy_awakeable_id(text: str) -> bool:
    """True for the legacy ``prom_1`` form, whose index names a journal entry."""
    return text.startswith(LEGACY_AWAKEABLE_ID_PREFIX)


def _awakeable_prefix(text: str) -> str:
    for prefix in (AWAKEABLE_ID_PREFIX, LEGACY_AWAKEABLE_ID_PREFIX):
        if text.startswith(prefix):
            return prefix
    raise ValueError(
        f"awakeable id {text!r} has an unknown prefix; expected '{AWAKEABLE_ID_PREFIX}'"
        f" (or legacy '{LEGACY_AWAKEABLE_ID_PREFIX}') followed by base64url"
    )


def _decode_base64url(encoded: str, text: str) -> bytes:
    stripped = encoded.rstrip("=")
    if "+" in stripped or "/" in stripped:
        raise ValueError(f"awakeable id {text!r} is not valid base64url: '+' or '/' found")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"awakeable id {text!r} is not valid base64url: {error}") from None


def _byte_swapped(value: int, width_bytes: int) -> int:
    return int.from_bytes(value.to_bytes(width_bytes, "big"), "little")


def _remember(text: str, invocation_id: InvocationId) -> None:
    if len(_recent_ids) >= MAX_PARSED_IDS_CACHED:
        _recent_ids.clear()
    _recent_ids[text] = invocation_id


def _base62_fixed(value: int, width: int) -> str:
    pairs: list[str] = []
    remaining = value
    while remaining:
        remaining, remainder = divmod(remaining, 3844)
        pairs.append(_BASE62_PAIRS[remainder])
    encoded = "".join(reversed(pairs)).lstrip("0")
    assert len(encoded) <= width, f"{value} needs more than {width} base62 digits"
    return encoded.rjust(width, "0")


def _base62_decode(chars: str, text: str) -> int:
    value = 0
    start = len(chars) % 2
    if start:
        digit = _BASE62_VALUE.get(chars[0])
        if digit is None:
            raise ValueError(f"invocation id {text!r} has {chars[0]!r}, not base62; {_EXPECTED_FORM}")
        value = digit
    for index in range(start, len(chars), 2):
        pair = _BASE62_PAIR_VALUE.get(chars[index : index + 2])
        if pair is None:
            bad = next(char for char in chars[index : index + 2] if char not in _BASE62_VALUE)
            raise ValueError(f"invocation id {text!r} has {bad!r}, not base62; {_EXPECTED_FORM}")
        value = value * 3844 + pair
    return value


def ulid_bytes(now_ms: int | None = None, entropy: bytes | None = None) -> bytes:
    """A 16-byte ULID: 48-bit millisecond timestamp (big-endian) then 80 random bits (`entropy`, 10 bytes, or fresh ones)."""
    timestamp_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if not 0 <= timestamp_ms < 2**48:
        raise ValueError(f"now_ms {timestamp_ms} does not fit the ULID's 48-bit timestamp")
    if entropy is None:
        entropy = os.urandom(10)
    assert len(entropy) == 10, "a ULID has 80 random bits"
    return timestamp_ms.to_bytes(6, "big") + entropy
