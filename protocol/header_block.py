"""HPACK header blocks for duro's HTTP/2 requests, without the dynamic table and with each header's encoding cached.

hpack's own encoder searches the static and dynamic tables and Huffman-codes
every header of every request, which was a tenth of the CPU of starting an
invocation. An attempt's headers are mostly the same from one request to the
next (method, scheme, authority, path, content type), so `CachingEncoder`
encodes each header once as an indexed static-table entry or a literal
*without indexing* (RFC 7541, 6.1 and 6.2.2) and reuses the bytes; headers
unique to one request (the invocation id, the key, trace context, signatures)
are written as plain literals and not cached. Nothing is ever added to the
dynamic table, so the peer's decoder state never changes and a cached encoding
stays valid for the connection's life; a table size change the peer asks for
is still signalled at the start of the next block, as the RFC requires.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import hpack
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

MAX_CACHED_HEADERS: Final = 1024
"""Distinct cacheable headers kept; past it the cache starts afresh (a deployment with ever-new header values)."""

UNCACHED_HEADER_NAMES: Final = frozenset(
    {b"x-restate-invocation-id", b"x-restate-service-key", b"traceparent", b"tracestate", b"x-restate-jwt-v1", b"authorization"}
)
"""Headers whose values differ per request: encoded each time, never cached."""

_STATIC_PAIRS: Final = {pair: index for index, pair in reversed(list(enumerate(HeaderTable.STATIC_TABLE, start=1)))}
_STATIC_NAMES: Final = {name: index for (name, _), index in reversed(list(_STATIC_PAIRS.items()))}


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


def _string_literal(data: bytes) -> bytes:
    """A string literal, not Huffman-coded: its length (7-bit prefix, H bit clear) and its bytes."""
    return bytes(encode_integer(len(data), 7)) + data


def encode_header(name: bytes, value: bytes) -> bytes:
    """One header as a static-table index (an exact match) or a literal without indexing (indexed name where the table has it)."""
    index = _STATIC_PAIRS.get((name, value))
    if index is not None:
        prefix = encode_integer(index, 7)
        prefix[0] |= 0x80
        return bytes(prefix)
    name_index = _STATIC_NAMES.get(name)
    if name_index is not None:
        return bytes(encode_integer(name_index, 4)) + _string_literal(value)
    return b"\x00" + _string_literal(name) + _string_literal(value)


class CachingEncoder(hpack.Encoder):
    """A drop-in `hpack.Encoder` for h2 (`H2Connection.encoder`) that never indexes and caches each header's bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[tuple[str | bytes, str | bytes], bytes] = {}

    def encode(self, headers: Iterable[tuple[str | bytes, str | bytes]], huffman: bool = True) -> bytes:  # type: ignore[override]  # h2 passes (name, value) pairs only
        """The header block of `headers` (pseudo-headers first, as the caller orders them); `huffman` is ignored."""
        block: list[bytes] = []
        if self.header_table.resized:
            block.append(self._encode_table_size_change())
            self.header_table.resized = False
        cache = self._cache
        for header in headers:
            encoded = cache.get(header)
            if encoded is None:
                name, value = _as_bytes(header[0]), _as_bytes(header[1])
                encoded = encode_header(name, value)
                if name not in UNCACHED_HEADER_NAMES:
                    if len(cache) >= MAX_CACHED_HEADERS:
                        cache.clear()
                    cache[(header[0], header[1])] = encoded
            block.append(encoded)
        return b"".join(block)
