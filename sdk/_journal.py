"""Reads journal messages for the SDK machine: decodes notifications and checks replayed commands.

Replay is deterministic only if the handler issues the same commands, in the same
order, with the same parameters as the journal recorded. `command_matches` says
whether a recorded command equals the one the handler issues now; the rules per
command type follow the protocol (a Sleep compares only its name, since its
wake-up time is computed from the clock; a OneWayCall ignores `invoke_time`).
"""

from __future__ import annotations

from google.protobuf import text_format
from google.protobuf.message import Message

from protocol import Frame, MessageType, ProtocolError, decode_message, pb
from sdk._results import (
    CompletionId,
    Failure,
    InvocationIdResult,
    NotificationId,
    Result,
    SignalId,
    SignalName,
    StateKeys,
    Value,
    Void,
)


def decode_notification(frame: Frame) -> tuple[NotificationId, Result]:
    """The id and result of a notification frame; raises ProtocolError if malformed."""
    message = decode_message(frame)
    if frame.type == MessageType.SIGNAL:
        return _signal_id(message), _oneof_result(frame.type, message)
    completion_id = CompletionId(message.completion_id)  # type: ignore[attr-defined]
    if frame.type == MessageType.SLEEP_COMPLETION:
        return completion_id, Void()
    if frame.type == MessageType.CALL_INVOCATION_ID_COMPLETION:
        return completion_id, InvocationIdResult(message.invocation_id)  # type: ignore[attr-defined]
    if frame.type == MessageType.GET_LAZY_STATE_KEYS_COMPLETION:
        keys = message.state_keys.keys  # type: ignore[attr-defined]
        return completion_id, StateKeys(tuple(key.decode("utf-8") for key in keys))
    return completion_id, _oneof_result(frame.type, message)


def _signal_id(message: Message) -> NotificationId:
    which = message.WhichOneof("signal_id")
    if which == "idx":
        return SignalId(message.idx)  # type: ignore[attr-defined]
    if which == "name":
        return SignalName(message.name)  # type: ignore[attr-defined]
    raise ProtocolError("signal notification has neither idx nor name; expected one of them")


def _oneof_result(message_type: int, message: Message) -> Result:
    which = message.WhichOneof("result")
    if which == "void":
        return Void()
    if which == "value":
        return Value(bytes(message.value.content))  # type: ignore[attr-defined]
    if which == "failure":
        return failure_from_pb(message.failure)  # type: ignore[attr-defined]
    raise ProtocolError(f"notification of type {message_type:#06x} carries no result; expected void, value or failure")


def failure_from_pb(failure: pb.Failure) -> Failure:
    """The SDK's view of a protobuf Failure."""
    metadata = tuple((entry.key, entry.value) for entry in failure.metadata)
    return Failure(code=failure.code, message=failure.message, metadata=metadata)


def failure_to_pb(failure: Failure) -> pb.Failure:
    """The protobuf form of a Failure."""
    message = pb.Failure(code=failure.code, message=failure.message)
    for key, value in failure.metadata:
        message.metadata.add(key=key, value=value)
    return message


def command_matches(recorded: Message, issued: Message) -> bool:
    """True if the recorded command is the same as the one the handler issues now."""
    if isinstance(issued, pb.InputCommandMessage):
        return True
    if isinstance(issued, pb.SleepCommandMessage):
        return isinstance(recorded, pb.SleepCommandMessage) and recorded.name == issued.name
    if isinstance(issued, pb.OneWayCallCommandMessage):
        if not isinstance(recorded, pb.OneWayCallCommandMessage):
            return False
        comparable = pb.OneWayCallCommandMessage()
        comparable.CopyFrom(recorded)
        comparable.invoke_time = issued.invoke_time
        return comparable == issued
    return recorded == issued


def describe(message: Message) -> str:
    """A one-line, human-readable rendering of a message for error texts."""
    body = text_format.MessageToString(message, as_one_line=True, as_utf8=True)
    if len(body) > 300:
        body = body[:297] + "..."
    return f"{type(message).__name__}{{{body}}}"
