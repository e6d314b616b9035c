"""Tests the frame codec: header layout, round trips, chunked input and its limits."""

from __future__ import annotations

import pytest

from protocol import service_protocol_pb2 as pb
from protocol.errors import FrameTooLargeError, ProtocolError
from protocol.frames import (
    MESSAGE_CLASSES,
    REQUESTED_ACK,
    Frame,
    FrameDecoder,
    MessageType,
    decode_message,
    encode_frame,
    encode_message,
    is_command,
    is_completion_notification,
    is_control,
    is_notification,
    message_type_of,
)


def sample_messages() -> list:
    failure = pb.Failure(code=500, message="boom", metadata=[pb.FailureMetadata(key="k", value="v")])
    return [
        pb.StartMessage(
            id=bytes(range(24)),
            debug_id="inv_1abc",
            known_entries=3,
            state_map=[pb.StartMessage.StateEntry(key=b"count", value=b"7")],
            partial_state=True,
            key="alice",
            retry_count_since_last_stored_entry=2,
            duration_since_last_stored_entry=1500,
            random_seed=2**63 + 5,
            scope="s",
            limit_key="l",
            idempotency_key="ik",
        ),
        pb.SuspensionMessage(waiting_completions=[1, 2], waiting_signals=[1], waiting_named_signals=["n"]),
        pb.SuspensionMessage(
            awaiting_on=pb.Future(
                combinator_type=pb.ALL_SUCCEEDED_OR_FIRST_FAILED,
                waiting_completions=[3],
                nested_futures=[pb.Future(combinator_type=pb.FIRST_COMPLETED, waiting_signals=[1, 2])],
            )
        ),
        pb.ErrorMessage(code=500, message="m", next_retry_delay=10, behavior=pb.PAUSE),
        pb.EndMessage(),
        pb.ProposeRunCompletionMessage(result_completion_id=4, failure=failure),
        pb.AwaitingOnMessage(awaiting_on=pb.Future(waiting_completions=[1]), executing_side_effects=True),
        pb.ProposeRunCompletionAckMessage(completion_id=4),
        pb.InputCommandMessage(headers=[pb.Header(key="a", value="b")], value=pb.Value(content=b"{}")),
        pb.CallCommandMessage(
            service_name="S",
            handler_name="h",
            parameter=b"1",
            result_completion_id=2,
            invocation_id_notification_idx=1,
            idempotency_key="x",
        ),
        pb.SendSignalCommandMessage(target_invocation_id="inv_1x", idx=1, void=pb.Void()),
        pb.CallInvocationIdCompletionNotificationMessage(completion_id=1, invocation_id="inv_1x"),
        pb.GetLazyStateKeysCompletionNotificationMessage(completion_id=1, state_keys=pb.StateKeys(keys=[b"a"])),
        pb.SignalNotificationMessage(idx=pb.CANCEL, void=pb.Void()),
    ]


@pytest.mark.parametrize("message", sample_messages(), ids=lambda m: type(m).__name__)
def test_message_round_trip(message) -> None:
    encoded = encode_message(message)
    frames = FrameDecoder().feed(encoded)
    assert len(frames) == 1
    assert frames[0].type == message_type_of(message)
    assert decode_message(frames[0]) == message


def test_header_layout_matches_wire_bytes() -> None:
    message = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"x")
    encoded = encode_message(message, flags=REQUESTED_ACK)
    payload = message.SerializeToString()
    assert encoded[:8] == bytes([0x00, 0x05, 0x80, 0x00]) + len(payload).to_bytes(4, "big")
    assert encoded[8:] == payload


def test_signal_header_type_code() -> None:
    encoded = encode_message(pb.SignalNotificationMessage(idx=1, void=pb.Void()))
    assert encoded[:2] == b"\xfb\xff"


def test_every_type_has_a_class_and_back() -> None:
    assert set(MESSAGE_CLASSES) == set(MessageType)
    for message_type, message_class in MESSAGE_CLASSES.items():
        assert message_type_of(message_class()) == message_type


def test_type_codes_from_the_protocol() -> None:
    assert MessageType.START == 0x0000
    assert MessageType.PROPOSE_RUN_COMPLETION_ACK == 0x0007
    assert MessageType.INPUT_COMMAND == 0x0400
    assert MessageType.SEND_SIGNAL_COMMAND == 0x0410
    assert MessageType.COMPLETE_AWAKEABLE_COMMAND == 0x0414
    assert MessageType.GET_LAZY_STATE_COMPLETION == 0x8002
    assert MessageType.CALL_COMPLETION == 0x800D
    assert MessageType.CALL_INVOCATION_ID_COMPLETION == 0x800E
    assert MessageType.GET_INVOCATION_OUTPUT_COMPLETION == 0x8013
    assert MessageType.SIGNAL == 0xFBFF


def test_byte_by_byte_feeding_yields_all_frames_in_order() -> None:
    messages = sample_messages()
    stream = b"".join(encode_message(m) for m in messages)
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for index in range(len(stream)):
        frames += decoder.feed(stream[index : index + 1])
    decoder.finish()
    assert [decode_message(f) for f in frames] == messages
    assert decoder.buffered_bytes == 0


def test_uneven_chunks_and_flags_survive() -> None:
    stream = encode_frame(0x0005, b"abc", flags=REQUESTED_ACK) + encode_frame(0x0003, b"") * 3
    decoder = FrameDecoder()
    frames = decoder.feed(stream[:5]) + decoder.feed(stream[5:12]) + decoder.feed(stream[12:])
    assert frames[0] == Frame(0x0005, REQUESTED_ACK, b"abc")
    assert frames[0].requested_ack
    assert frames[1:] == [Frame(0x0003, 0, b"")] * 3
    assert not frames[1].requested_ack


def test_oversized_frame_fails_at_its_header() -> None:
    decoder = FrameDecoder(max_frame_bytes=16)
    assert decoder.feed(encode_frame(0x0400, b"x" * 16)) != []
    with pytest.raises(FrameTooLargeError, match="17-byte payload, over the limit max_frame_bytes=16") as known:
        decoder.feed(encode_frame(0x0400, b"x" * 17)[:8])
    assert (known.value.message_type, known.value.length, known.value.max_frame_bytes) == (0x0400, 17, 16)


def test_an_oversized_header_of_an_unknown_type_is_a_plain_protocol_error() -> None:
    """Bytes that are not frames (an HTML page, say) must not pass for a message over the limit: that one is not retried."""
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(ProtocolError, match="unknown type 0x3c68") as error:
        decoder.feed(b"<html><body>")
    assert not isinstance(error.value, FrameTooLargeError)


def test_truncated_tail_is_reported_by_finish() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(0x0003, b"") + encode_frame(0x0400, b"abcdef")[:10])
    with pytest.raises(ProtocolError, match="declared 6 payload bytes, got 2"):
        decoder.finish()


def test_truncated_header_is_reported_by_finish() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\x00")
    with pytest.raises(ProtocolError, match="3 trailing bytes"):
        decoder.finish()


def test_unknown_type_names_it_in_hex() -> None:
    with pytest.raises(ProtocolError, match="unknown message type 0x0415"):
        decode_message(Frame(0x0415, 0, b""))
    with pytest.raises(ProtocolError, match="0xfc01"):
        decode_message(Frame(0xFC01, 0, b""))


def test_garbage_payload_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="0x0000"):
        decode_message(Frame(0x0000, 0, b"\xff\xff\xff"))


def test_foreign_message_class_is_rejected() -> None:
    from google.protobuf import struct_pb2

    with pytest.raises(ProtocolError, match="Struct is not a service protocol message"):
        encode_message(struct_pb2.Struct())


def test_encode_frame_rejects_out_of_range_fields() -> None:
    with pytest.raises(ProtocolError, match="16 bits"):
        encode_frame(0x10000, b"")
    with pytest.raises(ProtocolError, match="16 bits"):
        encode_frame(0x0400, b"", flags=0x10000)


def test_type_classification() -> None:
    assert is_control(MessageType.START) and not is_command(MessageType.START)
    assert is_command(MessageType.INPUT_COMMAND) and is_command(MessageType.COMPLETE_AWAKEABLE_COMMAND)
    assert not is_notification(MessageType.COMPLETE_AWAKEABLE_COMMAND)
    assert is_notification(MessageType.SIGNAL) and not is_completion_notification(MessageType.SIGNAL)
    assert is_completion_notification(MessageType.RUN_COMPLETION)
    assert not is_notification(0xFC00) and not is_command(0xFC00)
