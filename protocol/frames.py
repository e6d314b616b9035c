"""Encodes and decodes service protocol frames: an 8-byte header and a protobuf payload.

The header is one big-endian u64: message type in bits 63..48, flags in bits
47..32 (bit 47, flag 0x8000, is REQUESTED_ACK) and the payload length in bits
31..0. Type ranges: 0x0000-0x03FF control, 0x0400-0x7FFF commands,
0x8000-0xFBFF notifications, 0xFC00 and up custom entries.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError, Message

from protocol import service_protocol_pb2 as pb
from protocol.errors import FrameTooLargeError, ProtocolError

HEADER_BYTES: Final = 8
MAX_PAYLOAD_FIELD_BYTES: Final = 0xFFFF_FFFF
DEFAULT_MAX_FRAME_BYTES: Final = 32 * 1024 * 1024
"""Default limit on one frame's payload; the header's length field allows 4 GiB."""

REQUESTED_ACK: Final = 0x8000
"""Flag on ProposeRunCompletion (V7): the SDK wants a ProposeRunCompletionAck."""

COMMAND_TYPE_MIN: Final = 0x0400
NOTIFICATION_TYPE_MIN: Final = 0x8000
CUSTOM_TYPE_MIN: Final = 0xFC00

_HEADER = struct.Struct(">HHI")


class MessageType(enum.IntEnum):
    """Every message type code of protocol V5 to V7."""

    START = 0x0000
    SUSPENSION = 0x0001
    ERROR = 0x0002
    END = 0x0003
    COMMAND_ACK = 0x0004
    PROPOSE_RUN_COMPLETION = 0x0005
    AWAITING_ON = 0x0006
    PROPOSE_RUN_COMPLETION_ACK = 0x0007

    INPUT_COMMAND = 0x0400
    OUTPUT_COMMAND = 0x0401
    GET_LAZY_STATE_COMMAND = 0x0402
    SET_STATE_COMMAND = 0x0403
    CLEAR_STATE_COMMAND = 0x0404
    CLEAR_ALL_STATE_COMMAND = 0x0405
    GET_LAZY_STATE_KEYS_COMMAND = 0x0406
    GET_EAGER_STATE_COMMAND = 0x0407
    GET_EAGER_STATE_KEYS_COMMAND = 0x0408
    GET_PROMISE_COMMAND = 0x0409
    PEEK_PROMISE_COMMAND = 0x040A
    COMPLETE_PROMISE_COMMAND = 0x040B
    SLEEP_COMMAND = 0x040C
    CALL_COMMAND = 0x040D
    ONE_WAY_CALL_COMMAND = 0x040E
    SEND_SIGNAL_COMMAND = 0x0410
    RUN_COMMAND = 0x0411
    ATTACH_INVOCATION_COMMAND = 0x0412
    GET_INVOCATION_OUTPUT_COMMAND = 0x0413
    COMPLETE_AWAKEABLE_COMMAND = 0x0414

    GET_LAZY_STATE_COMPLETION = 0x8002
    GET_LAZY_STATE_KEYS_COMPLETION = 0x8006
    GET_PROMISE_COMPLETION = 0x8009
    PEEK_PROMISE_COMPLETION = 0x800A
    COMPLETE_PROMISE_COMPLETION = 0x800B
    SLEEP_COMPLETION = 0x800C
    CALL_COMPLETION = 0x800D
    CALL_INVOCATION_ID_COMPLETION = 0x800E
    RUN_COMPLETION = 0x8011
    ATTACH_INVOCATION_COMPLETION = 0x8012
    GET_INVOCATION_OUTPUT_COMPLETION = 0x8013
    SIGNAL = 0xFBFF


MESSAGE_CLASSES: Final[dict[MessageType, type[Message]]] = {
    MessageType.START: pb.StartMessage,
    MessageType.SUSPENSION: pb.SuspensionMessage,
    MessageType.ERROR: pb.ErrorMessage,
    MessageType.END: pb.EndMessage,
    MessageType.COMMAND_ACK: pb.CommandAckMessage,
    MessageType.PROPOSE_RUN_COMPLETION: pb.ProposeRunCompletionMessage,
    MessageType.AWAITING_ON: pb.AwaitingOnMessage,
    MessageType.PROPOSE_RUN_COMPLETION_ACK: pb.ProposeRunCompletionAckMessage,
    MessageType.INPUT_COMMAND: pb.InputCommandMessage,
    MessageType.OUTPUT_COMMAND: pb.OutputCommandMessage,
    MessageType.GET_LAZY_STATE_COMMAND: pb.GetLazyStateCommandMessage,
    MessageType.SET_STATE_COMMAND: pb.SetStateCommandMessage,
    MessageType.CLEAR_STATE_COMMAND: pb.ClearStateCommandMessage,
    MessageType.CLEAR_ALL_STATE_COMMAND: pb.ClearAllStateCommandMessage,
    MessageType.GET_LAZY_STATE_KEYS_COMMAND: pb.GetLazyStateKeysCommandMessage,
    MessageType.GET_EAGER_STATE_COMMAND: pb.GetEagerStateCommandMessage,
    MessageType.GET_EAGER_STATE_KEYS_COMMAND: pb.GetEagerStateKeysCommandMessage,
    MessageType.GET_PROMISE_COMMAND: pb.GetPromiseCommandMessage,
    MessageType.PEEK_PROMISE_COMMAND: pb.PeekPromiseCommandMessage,
    MessageType.COMPLETE_PROMISE_COMMAND: pb.CompletePromiseCommandMessage,
    MessageType.SLEEP_COMMAND: pb.SleepCommandMessage,
    MessageType.CALL_COMMAND: pb.CallCommandMessage,
    MessageType.ONE_WAY_CALL_COMMAND: pb.OneWayCallCommandMessage,
    MessageType.SEND_SIGNAL_COMMAND: pb.SendSignalCommandMessage,
    MessageType.RUN_COMMAND: pb.RunCommandMessage,
    MessageType.ATTACH_INVOCATION_COMMAND: pb.AttachInvocationCommandMessage,
    MessageType.GET_INVOCATION_OUTPUT_COMMAND: pb.GetInvocationOutputCommandMessage,
    MessageType.COMPLETE_AWAKEABLE_COMMAND: pb.CompleteAwakeableCommandMessage,
    MessageType.GET_LAZY_STATE_COMPLETION: pb.GetLazyStateCompletionNotificationMessage,
    MessageType.GET_LAZY_STATE_KEYS_COMPLETION: pb.GetLazyStateKeysCompletionNotificationMessage,
    MessageType.GET_PROMISE_COMPLETION: pb.GetPromiseCompletionNotificationMessage,
    MessageType.PEEK_PROMISE_COMPLETION: pb.PeekPromiseCompletionNotificationMessage,
    MessageType.COMPLETE_PROMISE_COMPLETION: pb.CompletePromiseCompletionNotificationMessage,
    MessageType.SLEEP_COMPLETION: pb.SleepCompletionNotificationMessage,
    MessageType.CALL_COMPLETION: pb.CallCompletionNotificationMessage,
    MessageType.CALL_INVOCATION_ID_COMPLETION: pb.CallInvocationIdCompletionNotificationMessage,
    MessageType.RUN_COMPLETION: pb.RunCompletionNotificationMessage,
    MessageType.ATTACH_INVOCATION_COMPLETION: pb.AttachInvocationCompletionNotificationMessage,
    MessageType.GET_INVOCATION_OUTPUT_COMPLETION: pb.GetInvocationOutputCompletionNotificationMessage,
    MessageType.SIGNAL: pb.SignalNotificationMessage,
}

_TYPE_OF_CLASS: Final[dict[type[Message], MessageType]] = {
    message_class: message_type for message_type, message_class in MESSAGE_CLASSES.items()
}


@dataclass(frozen=True)
class Frame:
    """One undecoded protocol message: its type code, header flags and payload."""

    type: int
    flags: int
    payload: bytes

    @property
    def requested_ack(self) -> bool:
        """True when the REQUESTED_ACK flag is set."""
        return bool(self.flags & REQUESTED_ACK)


def is_command(message_type: int) -> bool:
    """True for command type codes (0x0400..0x7FFF)."""
    return COMMAND_TYPE_MIN <= message_type < NOTIFICATION_TYPE_MIN


def is_notification(message_type: int) -> bool:
    """True for notification type codes (0x8000..0xFBFF), signals included."""
    return NOTIFICATION_TYPE_MIN <= message_type < CUSTOM_TYPE_MIN


def is_completion_notification(message_type: int) -> bool:
    """True for notifications that complete a command (all but SIGNAL)."""
    return is_notification(message_type) and message_type != MessageType.SIGNAL


def is_control(message_type: int) -> bool:
    """True for control message type codes (0x0000..0x03FF)."""
    return 0 <= message_type < COMMAND_TYPE_MIN


def message_type_of(message: Message) -> MessageType:
    """The type code of a protobuf message of this package's schema."""
    message_type = _TYPE_OF_CLASS.get(type(message))
    if message_type is None:
        raise ProtocolError(
            f"{type(message).__name__} is not a service protocol message; expected a message class from protocol.service_protocol_pb2"
        )
    return message_type


def encode_frame(message_type: int, payload: bytes, flags: int = 0) -> bytes:
    """The header for `payload` followed by the payload itself."""
    if not 0 <= message_type <= 0xFFFF:
        raise ProtocolError(f"message type {message_type:#x} does not fit 16 bits")
    if not 0 <= flags <= 0xFFFF:
        raise ProtocolError(f"flags {flags:#x} do not fit 16 bits")
    if len(payload) > MAX_PAYLOAD_FIELD_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds the 32-bit length field")
    return _HEADER.pack(message_type, flags, len(payload)) + payload


def encode_message(message: Message, flags: int = 0) -> bytes:
    """One frame holding `message`, typed by its class."""
    return encode_frame(message_type_of(message), message.SerializeToString(), flags)


def decode_message(frame: Frame) -> Message:
    """The protobuf message in `frame`, of the class its type code names."""
    message_class = _class_of_type(frame.type)
    message = message_class()
    try:
        message.ParseFromString(frame.payload)
    except DecodeError as error:
        raise ProtocolError(
            f"payload of message type {frame.type:#06x} ({message_class.__name__}) is not valid protobuf: {error}"
        ) from error
    return message


def _class_of_type(message_type: int) -> type[Message]:
    try:
        return MESSAGE_CLASSES[MessageType(message_type)]
    except ValueError:
        raise ProtocolError(f"unknown message type {message_type:#06x}; expected one of the V5-V7 codes") from None


_KNOWN_TYPES = frozenset(int(t) for t in MessageType)


class FrameDecoder:
    """Splits a byte stream, fed in chunks of any size, into frames.

    A frame whose payload exceeds `max_frame_bytes` raises as soon as its
    header arrives, before the payload is buffered: `FrameTooLargeError` for
    a known message type (a real message over the limit), `ProtocolError`
    otherwise (bytes that are not frames at all).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 0:
            raise ValueError(f"max_frame_bytes must be >= 0, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Adds `data` and returns every frame completed by it, in order."""
        self._buffer += data
        frames: list[Frame] = []
        offset = 0
        while True:
            frame, next_offset = self._next_frame(offset)
            if frame is None:
                break
            frames.append(frame)
            offset = next_offset
        del self._buffer[:offset]
        return frames

    def finish(self) -> None:
        """Checks the stream ended on a frame boundary; raises ProtocolError if not."""
        if self._buffer:
            raise ProtocolError(f"stream ended inside a frame: {len(self._buffer)} trailing bytes ({self._describe_tail()})")

    def _next_frame(self, offset: int) -> tuple[Frame | None, int]:
        if len(self._buffer) - offset < HEADER_BYTES:
            return None, offset
        message_type, flags, length = _HEADER.unpack_from(self._buffer, offset)
        if length > self.max_frame_bytes:
            if message_type in _KNOWN_TYPES:
                raise FrameTooLargeError(message_type, length, self.max_frame_bytes)
            raise ProtocolError(
                f"frame of unknown type {message_type:#06x} announces a {length}-byte payload, over max_frame_bytes={self.max_frame_bytes}"
            )
        end = offset + HEADER_BYTES + length
        if len(self._buffer) < end:
            return None, offset
        payload = bytes(self._buffer[offset + HEADER_BYTES : end])
        return Frame(message_type, flags, payload), end

    def _describe_tail(self) -> str:
        if len(self._buffer) < HEADER_BYTES:
            return f"a header needs {HEADER_BYTES} bytes"
        message_type, _flags, length = _HEADER.unpack_from(self._buffer, 0)
        received = len(self._buffer) - HEADER_BYTES
        return f"type {message_type:#06x} declared {length} payload bytes, got {received}"
