"""Tests the HPACK encoder without dynamic table: what hpack's own decoder reads back, the cache, and table size updates."""

from __future__ import annotations

import hpack

from protocol.header_block import MAX_CACHED_HEADERS, CachingEncoder, encode_header

HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":authority", "127.0.0.1:9080"),
    (":path", "/invoke/Greeter/greet"),
    ("content-type", "application/vnd.restate.invocation.v6"),
    ("x-restate-invocation-id", "inv_1abc"),
    ("x-custom", "Ünïcode " + "x" * 200),  # a value over 127 bytes: a multi-byte length prefix
]


def test_blocks_decode_to_the_headers_and_leave_the_decoders_table_empty() -> None:
    encoder, decoder = CachingEncoder(), hpack.Decoder()
    for invocation in range(3):
        headers = [*HEADERS, ("x-restate-invocation-id", f"inv_{invocation}")]
        assert decoder.decode(encoder.encode(headers)) == headers
    assert len(decoder.header_table.dynamic_entries) == 0


def test_exact_static_entries_are_one_byte_and_per_request_headers_are_not_cached() -> None:
    assert encode_header(b":method", b"POST") == bytes([0x80 | 3])
    assert encode_header(b":scheme", b"http") == bytes([0x80 | 6])
    encoder = CachingEncoder()
    for number in range(10):
        encoder.encode([("x-restate-invocation-id", f"inv_{number}"), ("traceparent", f"00-{number}")])
    assert encoder._cache == {}


def test_the_cache_is_bounded() -> None:
    encoder, decoder = CachingEncoder(), hpack.Decoder()
    for number in range(MAX_CACHED_HEADERS + 10):
        assert decoder.decode(encoder.encode([("x-value", str(number))])) == [("x-value", str(number))]
        assert len(encoder._cache) <= MAX_CACHED_HEADERS


def test_a_table_size_change_is_signalled_at_the_start_of_the_next_block() -> None:
    encoder, decoder = CachingEncoder(), hpack.Decoder()
    encoder.header_table_size = 256  # as h2 does when the peer's SETTINGS_HEADER_TABLE_SIZE changes
    block = encoder.encode(HEADERS)
    assert block[0] & 0xE0 == 0x20, "a dynamic table size update comes first"
    assert decoder.decode(block) == HEADERS
    assert decoder.header_table.maxsize == 256
    assert encoder.encode(HEADERS)[0] & 0xE0 != 0x20, "signalled once"
