"""Fuzzing the service protocol's decoding with hypothesis: any bytes, cut anywhere, decode to frames or fail with ProtocolError.

What a deployment sends is untrusted input: the frame decoder and message
decoding must never fail any other way (an unexpected exception would be an
invoker crash instead of a failed attempt with its reason).
"""

from __future__ import annotations

from byte_cuts import pieces
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FrameTooLargeError, ProtocolError
from protocol.frames import Frame, FrameDecoder, MessageType, decode_message, encode_frame

MAX_FRAME_BYTES = 256
KNOWN_TYPES = [int(t) for t in MessageType]


def _decode(pieces: list[bytes], max_frame_bytes: int = MAX_FRAME_BYTES) -> list[Frame]:
    decoder = FrameDecoder(max_frame_bytes=max_frame_bytes)
    frames: list[Frame] = []
    for piece in pieces:
        frames.extend(decoder.feed(piece))
    decoder.finish()
    return frames


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_bytes_in_any_pieces_decode_to_frames_or_fail_with_a_protocol_error(data: bytes, cuts: list[int]) -> None:
    try:
        frames = _decode(pieces(data, cuts))
    except ProtocolError as error:
        assert str(error), "a protocol error says what was wrong"
        return
    # What decodes encodes back to the same bytes, and the cuts did not matter.
    assert b"".join(encode_frame(f.type, f.payload, f.flags) for f in frames) == data
    assert _decode([data]) == frames


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(KNOWN_TYPES), st.binary(max_size=MAX_FRAME_BYTES), st.integers(min_value=0, max_value=0xFFFF)),
        max_size=8,
    ),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_frames_round_trip_however_the_stream_is_cut(frames: list[tuple[int, bytes, int]], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(message_type, payload, flags) for message_type, payload, flags in frames)
    assert _decode(pieces(stream, cuts)) == [Frame(t, f, p) for t, p, f in frames]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KNOWN_TYPES), st.integers(min_value=MAX_FRAME_BYTES + 1, max_value=2**32 - 1))
def test_a_known_message_over_the_limit_is_too_large_and_says_so(message_type: int, length: int) -> None:
    header = message_type.to_bytes(2, "big") + b"\x00\x00" + length.to_bytes(4, "big")
    try:
        FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES).feed(header)
    except FrameTooLargeError as error:
        assert error.length == length and f"max_frame_bytes={MAX_FRAME_BYTES}" in str(error)
    else:
        raise AssertionError("a header announcing more than the limit must be refused at once")


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.sampled_from(KNOWN_TYPES), st.integers(min_value=0, max_value=0xFFFF)), st.binary(max_size=300))
def test_any_payload_of_any_type_decodes_to_a_message_or_fails_with_a_protocol_error(message_type: int, payload: bytes) -> None:
    try:
        message = decode_message(Frame(message_type, 0, payload))
    except ProtocolError as error:
        assert str(error)
        return
    assert message.SerializeToString() is not None
