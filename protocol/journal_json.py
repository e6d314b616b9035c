"""Restate's JSON of a journal entry (`sys_journal.entry_json`): a stored command or notification as Restate 1.7's serde writes it.

The shape is Restate's `journal_v2::Entry` (checked against restate-server
1.7.12's answers in `tests/unit/test_journal_json.py`):
`{"Command": {"SetState": {"key": "cart", "value": [123, ...], "name": ""}}}`,
`{"Notification": {"Completion": {"Run": {"completion_id": 1, "result": {"Success": []}}}}}`,
`{"Notification": {"Signal": {"id": {"Index": 17}, "result": "Void"}}}`. Bytes are
arrays of numbers, times milliseconds since the epoch, durations
`{"secs", "nanos"}`, failures `{"code", "message"}`. The `restate` CLI's
`invocations describe` and duro's console read it.

Two facts are not in the stored message: the id of the invocation a call
made (it is in the journal's `CallInvocationId` notification; pass those as
`call_ids`) and the kind of the called handler (`target_kind`, from the
registry). A call whose target kind is unknown (its service is no longer
registered) gets no JSON rather than a guessed one. What duro does not keep
with a call, its span context and the callee's retentions, is written as
Restate writes an empty one (zeros).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from google.protobuf.message import Message

from protocol import service_protocol_pb2 as pb
from protocol.frames import Frame, MessageType, decode_message

TargetKind = Callable[[str, str], tuple[str, str | None] | None]
"""(service, handler) -> Restate's target type (`Service`, `VirtualObject`, `Workflow`) and handler type
(`Exclusive`, `Shared`, `Workflow`; None for a plain service), or None if the handler is unknown."""

Json = dict[str, Any]

_ZERO_DURATION: Final = {"secs": 0, "nanos": 0}
_EMPTY_SPAN: Final = {
    "span_context": {"trace_id": [0] * 16, "span_id": [0] * 8, "trace_flags": 0, "is_remote": False, "trace_state": ""},
    "cause": None,
}


def entry_json(message_type: int, payload: bytes, call_ids: Mapping[int, str], target_kind: TargetKind) -> Json | None:
    """The entry as Restate's JSON, or None for an entry this version cannot decode or describe."""
    try:
        kind = MessageType(message_type)
        message = decode_message(Frame(message_type, 0, payload))
    except Exception:  # a stored entry of another protocol version still gets its row, without JSON
        return None
    command = _COMMANDS.get(kind)
    if command is not None:
        body = command(message, call_ids, target_kind)
        return None if body is None else {"Command": body}
    completion = _COMPLETIONS.get(kind)
    if completion is not None:
        name, build = completion
        return {"Notification": {"Completion": {name: build(message)}}}
    if kind is MessageType.SIGNAL:
        assert isinstance(message, pb.SignalNotificationMessage)
        return {"Notification": {"Signal": {"id": _signal_id(message), "result": _result(message, void="Void")}}}
    return None


# ---------------------------------------------------------------- pieces


def _bytes(data: bytes) -> list[int]:
    return list(data)


def _text(data: bytes) -> str:
    return data.decode(errors="replace")


def _failure(failure: pb.Failure) -> Json:
    out: Json = {"code": failure.code, "message": failure.message}
    if len(failure.metadata):
        out["metadata"] = [{"key": item.key, "value": item.value} for item in failure.metadata]
    return out


def _result(message: Message, void: str | None = None) -> Json | str:
    """A `result` oneof (void / value / failure) as Restate's enum: "Void", {"Success": [...]}, {"Failure": {...}}."""
    which = message.WhichOneof("result")
    if which == "failure":
        return {"Failure": _failure(message.failure)}  # type: ignore[attr-defined]  # every result oneof names it `failure`
    if which == "value":
        value = message.value  # type: ignore[attr-defined]  # and its value `value`
        return {"Success": _bytes(value if isinstance(value, bytes) else value.content)}
    return void if void is not None else {"Success": []}


def _headers(headers: Any) -> list[Json]:
    return [{"name": header.key, "value": header.value} for header in headers]


def _signal_id(message: pb.SignalNotificationMessage | pb.SendSignalCommandMessage) -> Json:
    if message.WhichOneof("signal_id") == "name":
        return {"Name": message.name}
    return {"Index": message.idx}


def _target(service: str, handler: str, key: str, target_kind: TargetKind) -> Json | None:
    kind = target_kind(service, handler)
    if kind is None:
        return None
    service_type, handler_type = kind
    if service_type == "Service":
        return {"Service": {"name": service, "handler": handler, "scope": None}}
    return {service_type: {"name": service, "key": key, "handler": handler, "handler_ty": handler_type, "scope": None}}


def _call_request(
    message: pb.CallCommandMessage | pb.OneWayCallCommandMessage, call_ids: Mapping[int, str], target_kind: TargetKind
) -> Json | None:
    target = _target(message.service_name, message.handler_name, message.key, target_kind)
    invocation_id = call_ids.get(message.invocation_id_notification_idx)
    if target is None or invocation_id is None:
        return None
    return {
        "invocation_id": invocation_id,
        "invocation_target": target,
        "span_context": _EMPTY_SPAN,
        "parameter": _bytes(message.parameter),
        "headers": _headers(message.headers),
        "idempotency_key": message.idempotency_key if message.HasField("idempotency_key") else None,
        "completion_retention_duration": _ZERO_DURATION,
        "journal_retention_duration": _ZERO_DURATION,
    }


def _attach_target(message: pb.AttachInvocationCommandMessage | pb.GetInvocationOutputCommandMessage) -> Json:
    which = message.WhichOneof("target")
    if which == "workflow_target":
        workflow = message.workflow_target
        return {"Workflow": {"service_name": workflow.workflow_name, "key": workflow.workflow_key, "scope": None}}
    if which == "idempotent_request_target":
        request = message.idempotent_request_target
        return {
            "IdempotentRequest": {
                "service_name": request.service_name,
                "service_key": request.service_key if request.HasField("service_key") else None,
                "service_handler": request.handler_name,
                "idempotency_key": request.idempotency_key,
                "scope": None,
            }
        }
    return {"InvocationId": message.invocation_id}


# ---------------------------------------------------------------- commands

_Command = Callable[[Any, Mapping[int, str], TargetKind], Json | None]


def _call(name: str, fields: Callable[[Any], Json]) -> _Command:
    """A Call or OneWayCall: the request (None if the callee's kind or id is unknown), then `fields`, then the name."""

    def command(message: Any, call_ids: Mapping[int, str], target_kind: TargetKind) -> Json | None:
        request = _call_request(message, call_ids, target_kind)
        if request is None:
            return None
        return {name: {"request": request, **fields(message), "name": message.name}}

    return command


def _simple(name: str, build: Callable[[Any], Json]) -> _Command:
    def command(message: Any, call_ids: Mapping[int, str], target_kind: TargetKind) -> Json:
        return {name: {**build(message), "name": message.name}}

    return command


_COMMANDS: Final[dict[MessageType, _Command]] = {
    MessageType.INPUT_COMMAND: _simple("Input", lambda m: {"headers": _headers(m.headers), "payload": _bytes(m.value.content)}),
    MessageType.OUTPUT_COMMAND: _simple("Output", lambda m: {"result": _result(m)}),
    MessageType.GET_LAZY_STATE_COMMAND: _simple("GetLazyState", lambda m: {"key": _text(m.key), "completion_id": m.result_completion_id}),
    MessageType.SET_STATE_COMMAND: _simple("SetState", lambda m: {"key": _text(m.key), "value": _bytes(m.value.content)}),
    MessageType.CLEAR_STATE_COMMAND: _simple("ClearState", lambda m: {"key": _text(m.key)}),
    MessageType.CLEAR_ALL_STATE_COMMAND: _simple("ClearAllState", lambda m: {}),
    MessageType.GET_LAZY_STATE_KEYS_COMMAND: _simple("GetLazyStateKeys", lambda m: {"completion_id": m.result_completion_id}),
    MessageType.GET_EAGER_STATE_COMMAND: _simple("GetEagerState", lambda m: {"key": _text(m.key), "result": _result(m, void="Void")}),
    MessageType.GET_EAGER_STATE_KEYS_COMMAND: _simple("GetEagerStateKeys", lambda m: {"state_keys": [_text(k) for k in m.value.keys]}),
    MessageType.GET_PROMISE_COMMAND: _simple("GetPromise", lambda m: {"key": m.key, "completion_id": m.result_completion_id}),
    MessageType.PEEK_PROMISE_COMMAND: _simple("PeekPromise", lambda m: {"key": m.key, "completion_id": m.result_completion_id}),
    MessageType.COMPLETE_PROMISE_COMMAND: _simple(
        "CompletePromise",
        lambda m: {
            "key": m.key,
            "value": {"Failure": _failure(m.completion_failure)}
            if m.WhichOneof("completion") == "completion_failure"
            else {"Success": _bytes(m.completion_value.content)},
            "completion_id": m.result_completion_id,
        },
    ),
    MessageType.SLEEP_COMMAND: _simple("Sleep", lambda m: {"wake_up_time": m.wake_up_time, "completion_id": m.result_completion_id}),
    MessageType.CALL_COMMAND: _call(
        "Call", lambda m: {"invocation_id_completion_id": m.invocation_id_notification_idx, "result_completion_id": m.result_completion_id}
    ),
    MessageType.ONE_WAY_CALL_COMMAND: _call(
        "OneWayCall", lambda m: {"invoke_time": m.invoke_time, "invocation_id_completion_id": m.invocation_id_notification_idx}
    ),
    MessageType.SEND_SIGNAL_COMMAND: _simple(
        "SendSignal",
        lambda m: {"target_invocation_id": m.target_invocation_id, "signal_id": _signal_id(m), "result": _result(m, void="Void")},
    ),
    MessageType.RUN_COMMAND: _simple("Run", lambda m: {"completion_id": m.result_completion_id}),
    MessageType.ATTACH_INVOCATION_COMMAND: _simple(
        "AttachInvocation", lambda m: {"target": _attach_target(m), "completion_id": m.result_completion_id}
    ),
    MessageType.GET_INVOCATION_OUTPUT_COMMAND: _simple(
        "GetInvocationOutput", lambda m: {"target": _attach_target(m), "completion_id": m.result_completion_id}
    ),
    MessageType.COMPLETE_AWAKEABLE_COMMAND: _simple(
        "CompleteAwakeable",
        lambda m: {
            "id": m.awakeable_id,
            "result": {"Failure": _failure(m.failure)} if m.WhichOneof("result") == "failure" else {"Success": _bytes(m.value.content)},
        },
    ),
}


# ---------------------------------------------------------------- completions

_COMPLETIONS: Final[dict[MessageType, tuple[str, Callable[[Any], Json]]]] = {
    MessageType.GET_LAZY_STATE_COMPLETION: (
        "GetLazyState",
        lambda m: {"completion_id": m.completion_id, "result": _result(m, void="Void")},
    ),
    MessageType.GET_LAZY_STATE_KEYS_COMPLETION: (
        "GetLazyStateKeys",
        lambda m: {"completion_id": m.completion_id, "state_keys": [_text(k) for k in m.state_keys.keys]},
    ),
    MessageType.GET_PROMISE_COMPLETION: ("GetPromise", lambda m: {"completion_id": m.completion_id, "result": _result(m)}),
    MessageType.PEEK_PROMISE_COMPLETION: ("PeekPromise", lambda m: {"completion_id": m.completion_id, "result": _result(m, void="Void")}),
    MessageType.COMPLETE_PROMISE_COMPLETION: (
        "CompletePromise",
        lambda m: {"completion_id": m.completion_id, "result": _result(m, void="Void")},
    ),
    MessageType.SLEEP_COMPLETION: ("Sleep", lambda m: {"completion_id": m.completion_id}),
    MessageType.CALL_INVOCATION_ID_COMPLETION: (
        "CallInvocationId",
        lambda m: {"completion_id": m.completion_id, "invocation_id": m.invocation_id},
    ),
    MessageType.CALL_COMPLETION: ("Call", lambda m: {"completion_id": m.completion_id, "result": _result(m)}),
    MessageType.RUN_COMPLETION: ("Run", lambda m: {"completion_id": m.completion_id, "result": _result(m)}),
    MessageType.ATTACH_INVOCATION_COMPLETION: ("AttachInvocation", lambda m: {"completion_id": m.completion_id, "result": _result(m)}),
    MessageType.GET_INVOCATION_OUTPUT_COMPLETION: (
        "GetInvocationOutput",
        lambda m: {"completion_id": m.completion_id, "result": _result(m, void="Void")},
    ),
}


def call_invocation_ids(entries: list[tuple[int, bytes]]) -> dict[int, str]:
    """Completion id -> invocation id of every `CallInvocationId` notification among a journal's (message type, payload) entries."""
    ids: dict[int, str] = {}
    for message_type, payload in entries:
        if message_type == MessageType.CALL_INVOCATION_ID_COMPLETION:
            message = decode_message(Frame(message_type, 0, payload))
            assert isinstance(message, pb.CallInvocationIdCompletionNotificationMessage)
            ids[message.completion_id] = message.invocation_id
    return ids
