"""Runs one service source on the official `restate-sdk` and on duro's SDK (only the import line differs) and compares what they say on the wire.

Both apps are served by real in-process hypercorn servers and get identical
hand-built invocation bodies over HTTP/1.1 (request/response). Their
responses must decode to the same protocol messages, modulo clock-derived
fields (sleep wake-up times, delayed-send times), error texts and V7
AwaitingOn hints (whether one is sent before the SDK sees the request body
end is a matter of timing).
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from protocol import pb
from tests.unit.sdk_endpoint import invocation_body, invoke_headers, messages_of, serve

pytestmark = pytest.mark.timeout(60)

SERVICE_SOURCE = """
from datetime import timedelta

{import_line}

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello {{name}}!"


@greeter.handler()
async def ids(ctx: restate.Context) -> list:
    awakeable_id, _ = ctx.awakeable()
    return [str(ctx.uuid()), awakeable_id]


@greeter.handler()
async def nap(ctx: restate.Context, millis: int) -> str:
    await ctx.sleep(timedelta(milliseconds=millis))
    return "rested"


@greeter.handler()
async def steps(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step-{{i}}", lambda i=i: i + 1, restate.RunOptions(type_hint=int))
    return total


@greeter.handler()
async def refuse(ctx: restate.Context, code: int) -> None:
    raise restate.TerminalError("refused", status_code=code)


@greeter.handler()
async def crash(ctx: restate.Context) -> None:
    ctx.set_nothing()


@greeter.handler()
async def call_and_send(ctx: restate.Context, name: str) -> str:
    ctx.service_send(greet, name, send_delay=timedelta(seconds=30))
    return await ctx.service_call(greet, name, idempotency_key="ik", headers={{"h": "v"}})


@greeter.handler()
async def race(ctx: restate.Context) -> list:
    _, answer = ctx.awakeable(type_hint=str)
    return await restate.select(answer=answer, timeout=ctx.sleep(timedelta(seconds=5)))


@greeter.handler()
async def both(ctx: restate.Context) -> str:
    await restate.gather(ctx.sleep(timedelta(seconds=1)), ctx.sleep(timedelta(seconds=2)))
    return "both"


def _boom() -> int:
    raise RuntimeError("boom")


@greeter.handler()
async def failing_run(ctx: restate.Context) -> int:
    return await ctx.run_typed("boom", _boom)


@greeter.handler()
async def bounded_run(ctx: restate.Context) -> str:
    options = restate.RunOptions(max_attempts=2, initial_retry_interval=timedelta(milliseconds=100))
    try:
        return str(await ctx.run_typed("boom", _boom, options))
    except restate.TerminalError as error:
        return f"gave up {{error.status_code}}"


@greeter.handler()
async def awakeables(ctx: restate.Context) -> str:
    ctx.resolve_awakeable("sign_1AAAAAAAAAAcAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x")
    _, value = ctx.awakeable(type_hint=str)
    return await value


@greeter.handler()
async def compensate(ctx: restate.Context) -> str:
    try:
        await ctx.sleep(timedelta(seconds=10))
    except restate.TerminalError:
        return await ctx.run_typed("undo", lambda: "undone", restate.RunOptions(type_hint=str))
    return "slept"


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler()
async def wipe(ctx: restate.ObjectContext) -> list:
    keys = await ctx.state_keys()
    ctx.clear("count")
    ctx.clear_all()
    return sorted(keys)


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, expected: str) -> bool:
    return await ctx.promise("clicked", type_hint=str).value() == expected


@signup.handler()
async def click(ctx: restate.WorkflowSharedContext, secret: str) -> None:
    await ctx.promise("clicked", type_hint=str).resolve(secret)


app = restate.app([greeter, counter, signup])
"""

CLOCK_FIELDS = {"wakeUpTime", "invokeTime"}
TEXT_FIELDS = {"message", "stacktrace"}


def load(name: str, import_line: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(SERVICE_SOURCE.format(import_line=import_line), name, "exec"), module.__dict__)
    return module


OFFICIAL = load("official_port", "import restate")
DURO = load("duro_port", "import sdk as restate")


@pytest.fixture
async def endpoints() -> AsyncIterator[tuple[str, str]]:
    async for official in serve(OFFICIAL.app):
        async for duro in serve(DURO.app):
            yield official, duro


def normalised(messages: list[Message]) -> list[tuple[str, dict[str, Any]]]:
    result = []
    for message in messages:
        if isinstance(message, pb.AwaitingOnMessage):
            continue
        fields = MessageToDict(message)
        for name in CLOCK_FIELDS | (TEXT_FIELDS if isinstance(message, pb.ErrorMessage) else set()):
            fields.pop(name, None)
        result.append((type(message).__name__, fields))
    return result


async def both_answers(
    endpoints: tuple[str, str], path: str, body: bytes, *journal: Message, version: int = 6, **start: Any
) -> tuple[list, list]:
    answers = []
    async with httpx.AsyncClient() as client:
        for base_url in endpoints:
            response = await client.post(
                f"{base_url}/invoke/{path}", content=invocation_body(body, *journal, **start), headers=invoke_headers(version)
            )
            assert response.status_code == 200, response.text
            answers.append(normalised(messages_of(response.content)))
    return answers[0], answers[1]


def state(**values: bytes) -> dict[str, Any]:
    return {"state_map": [pb.StartMessage.StateEntry(key=k.encode(), value=v) for k, v in values.items()], "partial_state": False}


CASES: list[tuple[str, str, bytes, tuple[Message, ...], dict[str, Any]]] = [
    ("output", "Greeter/greet", b'"ada"', (), {}),
    ("deterministic ids", "Greeter/ids", b"", (), {"random_seed": 99}),
    ("sleep suspends", "Greeter/nap", b"1000", (), {}),
    (
        "sleep replayed",
        "Greeter/nap",
        b"1000",
        (
            pb.SleepCommandMessage(wake_up_time=5, result_completion_id=1),
            pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void()),
        ),
        {},
    ),
    ("run proposes", "Greeter/steps", b"2", (), {}),
    (
        "runs replayed",
        "Greeter/steps",
        b"2",
        (
            pb.RunCommandMessage(result_completion_id=1, name="step-0"),
            pb.RunCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b"1")),
            pb.RunCommandMessage(result_completion_id=2, name="step-1"),
            pb.RunCompletionNotificationMessage(completion_id=2, value=pb.Value(content=b"2")),
        ),
        {},
    ),
    ("terminal error", "Greeter/refuse", b"418", (), {}),
    ("handler bug", "Greeter/crash", b"", (), {}),
    ("journal mismatch", "Greeter/nap", b"1000", (pb.ClearAllStateCommandMessage(),), {}),
    ("call and send", "Greeter/call_and_send", b'"bo"', (), {}),
    (
        "select",
        "Greeter/race",
        b"",
        (pb.SleepCommandMessage(result_completion_id=1), pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void())),
        {},
    ),
    ("gather suspends", "Greeter/both", b"", (), {}),
    (
        "cancel propagates to the called child",
        "Greeter/call_and_send",
        b'"bo"',
        (
            pb.OneWayCallCommandMessage(service_name="Greeter", handler_name="greet", parameter=b'"bo"', invocation_id_notification_idx=1),
            pb.CallCommandMessage(
                service_name="Greeter",
                handler_name="greet",
                parameter=b'"bo"',
                headers=[pb.Header(key="h", value="v")],
                idempotency_key="ik",
                invocation_id_notification_idx=2,
                result_completion_id=3,
            ),
            pb.CallInvocationIdCompletionNotificationMessage(completion_id=2, invocation_id="inv_child"),
            pb.SignalNotificationMessage(idx=1, void=pb.Void()),
        ),
        {},
    ),
    (
        "call result",
        "Greeter/call_and_send",
        b'"bo"',
        (
            pb.OneWayCallCommandMessage(service_name="Greeter", handler_name="greet", parameter=b'"bo"', invocation_id_notification_idx=1),
            pb.CallCommandMessage(
                service_name="Greeter",
                handler_name="greet",
                parameter=b'"bo"',
                headers=[pb.Header(key="h", value="v")],
                idempotency_key="ik",
                invocation_id_notification_idx=2,
                result_completion_id=3,
            ),
            pb.CallCompletionNotificationMessage(completion_id=3, failure=pb.Failure(code=404, message="nope")),
        ),
        {},
    ),
    ("retryable run failure", "Greeter/failing_run", b"", (), {}),
    (
        "run retried then given up",
        "Greeter/bounded_run",
        b"",
        (pb.RunCommandMessage(result_completion_id=1, name="boom"),),
        {"retry_count_since_last_stored_entry": 1},
    ),
    ("run still retried", "Greeter/bounded_run", b"", (), {}),
    ("awakeables", "Greeter/awakeables", b"", (pb.SignalNotificationMessage(idx=17, value=pb.Value(content=b'"v"')),), {}),
    (
        "await after cancellation",
        "Greeter/compensate",
        b"",
        (
            pb.SleepCommandMessage(result_completion_id=1),
            pb.SignalNotificationMessage(idx=1, void=pb.Void()),
            pb.RunCommandMessage(result_completion_id=2, name="undo"),
            pb.RunCompletionNotificationMessage(completion_id=2, value=pb.Value(content=b'"undone"')),
        ),
        {},
    ),
    ("eager state", "Counter/add", b"2", (), {"key": "c", **state(count=b"3")}),
    ("lazy state", "Counter/add", b"2", (), {"key": "c", "partial_state": True}),
    ("state keys and clear", "Counter/wipe", b"", (), {"key": "c", **state(count=b"3", other=b"1")}),
    ("shared read", "Counter/get", b"", (), {"key": "c", **state(count=b"8")}),
    ("promise value", "Signup/run", b'"s"', (), {"key": "u"}),
    ("promise resolve", "Signup/click", b'"s"', (), {"key": "u"}),
]


@pytest.mark.parametrize("version", [5, 6, 7])
@pytest.mark.parametrize(("case", "path", "body", "journal", "start"), CASES, ids=[case[0] for case in CASES])
async def test_same_messages_as_the_official_sdk(
    endpoints: tuple[str, str], version: int, case: str, path: str, body: bytes, journal: tuple[Message, ...], start: dict[str, Any]
) -> None:
    official, duro = await both_answers(endpoints, path, body, *journal, version=version, **start)

    assert duro == official, case


def without_schemas(manifest: dict[str, Any]) -> dict[str, Any]:
    for service in manifest["services"]:
        for handler in service["handlers"]:
            for payload in (handler.get("input", {}), handler.get("output", {})):
                payload.pop("jsonSchema", None)
    return manifest


@pytest.mark.parametrize("manifest_version", [2, 3, 4])
async def test_same_manifest_as_the_official_sdk(endpoints: tuple[str, str], manifest_version: int) -> None:
    accept = f"application/vnd.restate.endpointmanifest.v{manifest_version}+json"
    async with httpx.AsyncClient() as client:
        official, duro = [await client.get(f"{base_url}/discover", headers={"accept": accept}) for base_url in endpoints]

    assert duro.headers["content-type"] == official.headers["content-type"] == accept
    assert without_schemas(duro.json()) == without_schemas(official.json())
