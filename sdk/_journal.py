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

from protocol import Frame, ProtocolError, decode_message, pb
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
    match message:
        case pb.SignalNotificationMessage():
            return _signal_id(message), _oneof_result(frame.type, message)
        case pb.SleepCompletionNotificationMessage():
            return CompletionId(message.completion_id), Void()
        case pb.CallInvocationIdCompletionNotificationMessage():
            return CompletionId(message.completion_id), InvocationIdResult(message.invocation_id)
        case pb.GetLazyStateKeysCompletionNotificationMessage():
            return CompletionId(message.completion_id), StateKeys(tuple(key.decode("utf-8") for key in message.state_keys.keys))
        case (
            pb.GetLazyStateCompletionNotificationMessage()
            | pb.CallCompletionNotificationMessage()
            | pb.RunCompletionNotificationMessage()
            | pb.AttachInvocationCompletionNotificationMessage()
            | pb.GetInvocationOutputCompletionNotificationMessage()
            | pb.GetPromiseCompletionNotificationMessage()
            | pb.PeekPromiseCompletionNotificationMessage()
            | pb.CompletePromiseCompletionNotificationMessage()
        ):
            return CompletionId(message.completion_id), _oneof_result(frame.type, message)
        case _:
            raise ProtocolError(f"frame type {frame.type:#06x} is not a notification this SDK knows")


def _signal_id(message: pb.SignalNotificationMessage) -> NotificationId:
    which = message.WhichOneof("signal_id")
    if which == "idx":
        return SignalId(message.idx)
    if which == "name":
        return SignalName(message.name)
    raise ProtocolError("signal notification has neither idx nor name; expected one of them")


def _oneof_result(message_type: int, message: Message) -> Result:
    """The void/value/failure `result` oneof, read through the descriptor (the notifications differ in which of the three they have)."""
    which = message.WhichOneof("result")
    if which == "void":
        return Void()
    if which == "value":
        value = getattr(message, "value")  # noqa: B009 (the field exists: WhichOneof named it)
        assert isinstance(value, pb.Value), "a notification's value field is a Value message"
        return Value(bytes(value.content))
    if which == "failure":
        failure = getattr(message, "failure")  # noqa: B009 (the field exists: WhichOneof named it)
        assert isinstance(failure, pb.Failure), "a notification's failure field is a Failure message"
        return failure_from_pb(failure)
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
