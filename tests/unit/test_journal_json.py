"""`protocol.journal_json`: journal entries as Restate 1.7.12 writes them in `sys_journal.entry_json`.

The expected values are restate-server 1.7.12's answers for the same entries
(the seed examples and SdkTestService on the real server, queried with
`SELECT entry_json FROM sys_journal`), except where the comment says duro
cannot know the value.
"""

from __future__ import annotations

import json

from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType, message_type_of
from protocol.journal_json import call_invocation_ids, entry_json

CART = b'{"items":[{"product_id":"tea","price":3.5,"quantity":2}]}'


def kinds(service: str, handler: str) -> tuple[str, str | None] | None:
    return {("ShoppingCart", "get_total"): ("VirtualObject", "Shared"), ("Greeter", "greet"): ("Service", None)}.get((service, handler))


def as_json(message: object, call_ids: dict[int, str] | None = None) -> object:
    entry = entry_json(int(message_type_of(message)), message.SerializeToString(), call_ids or {}, kinds)  # type: ignore[arg-type]
    return json.loads(json.dumps(entry))


def test_commands_have_restates_shape() -> None:
    assert as_json(
        pb.InputCommandMessage(headers=[pb.Header(key="content-type", value="application/json")], value=pb.Value(content=b'"t1"'))
    ) == {
        "Command": {"Input": {"headers": [{"name": "content-type", "value": "application/json"}], "payload": [34, 116, 49, 34], "name": ""}}
    }
    assert as_json(pb.GetEagerStateCommandMessage(key=b"cart", void=pb.Void())) == {
        "Command": {"GetEagerState": {"key": "cart", "result": "Void", "name": ""}}
    }
    assert as_json(pb.GetEagerStateCommandMessage(key=b"cart", value=pb.Value(content=CART))) == {
        "Command": {"GetEagerState": {"key": "cart", "result": {"Success": list(CART)}, "name": ""}}
    }
    assert as_json(pb.SetStateCommandMessage(key=b"cart", value=pb.Value(content=CART))) == {
        "Command": {"SetState": {"key": "cart", "value": list(CART), "name": ""}}
    }
    assert as_json(pb.OutputCommandMessage(value=pb.Value(content=b"7.0"))) == {
        "Command": {"Output": {"result": {"Success": [55, 46, 48]}, "name": ""}}
    }
    assert as_json(pb.OutputCommandMessage(failure=pb.Failure(code=418, message="failed on purpose with 418"))) == {
        "Command": {"Output": {"result": {"Failure": {"code": 418, "message": "failed on purpose with 418"}}, "name": ""}}
    }
    assert as_json(pb.RunCommandMessage(result_completion_id=1, name="create")) == {
        "Command": {"Run": {"completion_id": 1, "name": "create"}}
    }
    assert as_json(pb.GetPromiseCommandMessage(key="email-link-clicked", result_completion_id=3)) == {
        "Command": {"GetPromise": {"key": "email-link-clicked", "completion_id": 3, "name": ""}}
    }
    assert as_json(pb.SleepCommandMessage(wake_up_time=1796044021797, result_completion_id=1)) == {
        "Command": {"Sleep": {"wake_up_time": 1796044021797, "completion_id": 1, "name": ""}}
    }


def test_notifications_have_restates_shape() -> None:
    assert as_json(pb.RunCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b""))) == {
        "Notification": {"Completion": {"Run": {"completion_id": 1, "result": {"Success": []}}}}
    }
    assert as_json(pb.CallInvocationIdCompletionNotificationMessage(completion_id=1, invocation_id="inv_1x")) == {
        "Notification": {"Completion": {"CallInvocationId": {"completion_id": 1, "invocation_id": "inv_1x"}}}
    }
    assert as_json(pb.CallCompletionNotificationMessage(completion_id=2, value=pb.Value(content=b"7.0"))) == {
        "Notification": {"Completion": {"Call": {"completion_id": 2, "result": {"Success": [55, 46, 48]}}}}
    }
    assert as_json(pb.SignalNotificationMessage(idx=1, void=pb.Void())) == {
        "Notification": {"Signal": {"id": {"Index": 1}, "result": "Void"}}
    }
    assert as_json(pb.SignalNotificationMessage(idx=17, value=pb.Value(content=b'"x"'))) == {
        "Notification": {"Signal": {"id": {"Index": 17}, "result": {"Success": [34, 120, 34]}}}
    }


def test_a_call_names_its_callee_and_the_callees_kind() -> None:
    call = pb.CallCommandMessage(
        service_name="ShoppingCart", handler_name="get_total", key="ada", invocation_id_notification_idx=1, result_completion_id=2
    )
    notification = pb.CallInvocationIdCompletionNotificationMessage(completion_id=1, invocation_id="inv_115oNPF1D1aq13sLXYk53MiyKVvj3p5mCJ")
    call_ids = call_invocation_ids(
        [
            (int(MessageType.CALL_COMMAND), call.SerializeToString()),
            (int(MessageType.CALL_INVOCATION_ID_COMPLETION), notification.SerializeToString()),
        ]
    )
    assert call_ids == {1: "inv_115oNPF1D1aq13sLXYk53MiyKVvj3p5mCJ"}
    entry = as_json(call, call_ids)
    assert isinstance(entry, dict)
    request = entry["Command"]["Call"].pop("request")
    assert entry == {"Command": {"Call": {"invocation_id_completion_id": 1, "result_completion_id": 2, "name": ""}}}
    # restate-server also writes the caller's span and the callee's retentions (86400 s each there); duro keeps neither with the call
    assert request["completion_retention_duration"] == {"secs": 0, "nanos": 0}
    assert request["span_context"]["span_context"]["trace_id"] == [0] * 16
    assert {
        k: v for k, v in request.items() if k not in ("span_context", "completion_retention_duration", "journal_retention_duration")
    } == {
        "invocation_id": "inv_115oNPF1D1aq13sLXYk53MiyKVvj3p5mCJ",
        "invocation_target": {
            "VirtualObject": {"name": "ShoppingCart", "key": "ada", "handler": "get_total", "handler_ty": "Shared", "scope": None}
        },
        "parameter": [],
        "headers": [],
        "idempotency_key": None,
    }
    one_way = pb.OneWayCallCommandMessage(service_name="Greeter", handler_name="greet", parameter=b'"x"', invocation_id_notification_idx=1)
    sent = as_json(one_way, call_ids)
    assert isinstance(sent, dict)
    assert sent["Command"]["OneWayCall"]["request"]["invocation_target"] == {
        "Service": {"name": "Greeter", "handler": "greet", "scope": None}
    }


def test_a_call_to_a_handler_the_registry_no_longer_knows_gets_no_json() -> None:
    call = pb.CallCommandMessage(service_name="Gone", handler_name="away", invocation_id_notification_idx=1, result_completion_id=2)
    assert as_json(call, {1: "inv_1x"}) is None


def test_an_entry_that_does_not_decode_gets_no_json() -> None:
    assert entry_json(int(MessageType.SET_STATE_COMMAND), b"\xff\xff\xff", {}, kinds) is None
    assert entry_json(0x7777, b"", {}, kinds) is None
