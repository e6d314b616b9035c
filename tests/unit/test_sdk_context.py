"""Tests the handler-facing API of duro's SDK (contexts, futures, combinators) by invoking handlers over a real in-process hypercorn."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message
from pydantic import BaseModel

import sdk
from protocol import pb
from sdk import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    TerminalError,
    WorkflowContext,
    WorkflowSharedContext,
)
from tests.unit.sdk_endpoint import INVOCATION_ID, invocation_body, invoke_headers, messages_of, serve

pytestmark = pytest.mark.timeout(30)


class Money(BaseModel):
    amount: float
    currency: str


@dataclass
class Point:
    x: int
    y: int


tools = sdk.Service("Tools")


@tools.handler()
async def randomness(ctx: Context) -> list[Any]:
    return [str(ctx.uuid()), ctx.random().randint(0, 10**9)]


@tools.handler()
async def clock(ctx: Context) -> float:
    return await ctx.time()


@tools.handler()
async def both_sleeps(ctx: Context) -> str:
    first, second = ctx.sleep(timedelta(seconds=1)), ctx.sleep(timedelta(seconds=2))
    await sdk.gather(first, second)
    return "both"


@tools.handler()
async def race(ctx: Context) -> list[Any]:
    _, answer = ctx.awakeable(type_hint=str)
    return await sdk.select(answer=answer, timeout=ctx.sleep(timedelta(seconds=5)))


@tools.handler()
async def awakeable_value(ctx: Context) -> str:
    awakeable_id, value = ctx.awakeable(type_hint=str)
    return awakeable_id + " " + await value


@tools.handler()
async def call_greeter(ctx: Context, name: str) -> str:
    return await ctx.service_call(greet_back, name)


@tools.handler()
async def send_later(ctx: Context, name: str) -> None:
    ctx.service_send(greet_back, name, send_delay=timedelta(seconds=10), idempotency_key="once")


@tools.handler()
async def chores(ctx: Context, invocation_id: str) -> None:
    ctx.cancel_invocation(invocation_id)
    ctx.resolve_awakeable("sign_1abc", {"ok": True})
    ctx.reject_awakeable("sign_1def", "no", 451)
    ctx.attach_invocation(invocation_id)


@tools.handler()
async def models(ctx: Context, money: Money) -> Point:
    assert isinstance(money, Money)
    return Point(x=int(money.amount), y=len(money.currency))


@tools.handler()
async def echo_request(ctx: Context) -> dict[str, Any]:
    request = ctx.request()
    return {"id": request.id, "headers": request.headers, "body": request.body.decode()}


@tools.handler()
async def catch_call_failure(ctx: Context) -> str:
    try:
        await ctx.service_call(greet_back, "x")
    except TerminalError as error:
        return f"{error.status_code} {error.message}"
    return "no failure"


@tools.handler()
async def greet_back(ctx: Context, name: str) -> str:
    return f"hi {name}"


cart = sdk.VirtualObject("Cart")


@cart.handler()
async def add(ctx: ObjectContext, money: Money) -> Money:
    total = await ctx.get("total", type_hint=Money) or Money(amount=0, currency=money.currency)
    total.amount += money.amount
    ctx.set("total", total)
    return total


@cart.handler(kind="shared")
async def total(ctx: ObjectSharedContext) -> float:
    money = await ctx.get("total", type_hint=Money)
    return 0.0 if money is None else money.amount


signup = sdk.Workflow("Signup")


@signup.main()
async def run(ctx: WorkflowContext, expected: str) -> bool:
    return await ctx.promise("clicked", type_hint=str).value() == expected


@signup.handler()
async def click(ctx: WorkflowSharedContext, secret: str) -> None:
    await ctx.promise("clicked", type_hint=str).resolve(secret)


@signup.handler()
async def peek(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.promise("clicked", type_hint=str).peek()


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    async for base_url in serve(sdk.app([tools, cart, signup])):
        yield base_url


async def invoke(endpoint: str, path: str, body: bytes, *journal: Message, version: int = 6, **start: Any) -> list[Message]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{endpoint}/invoke/{path}", content=invocation_body(body, *journal, **start), headers=invoke_headers(version)
        )
    assert response.status_code == 200, response.text
    return messages_of(response.content)


def output_value(messages: list[Message]) -> bytes:
    output, end = messages[-2:]
    assert isinstance(output, pb.OutputCommandMessage), messages
    assert isinstance(end, pb.EndMessage)
    return bytes(output.value.content)


# --- determinism ---------------------------------------------------------------------------


async def test_uuid_and_random_follow_the_start_seed(endpoint: str) -> None:
    first = output_value(await invoke(endpoint, "Tools/randomness", b"", random_seed=12345))
    again = output_value(await invoke(endpoint, "Tools/randomness", b"", random_seed=12345))
    other = output_value(await invoke(endpoint, "Tools/randomness", b"", random_seed=54321))

    assert first == again
    assert first != other


async def test_time_is_journaled_and_replayed(endpoint: str) -> None:
    fresh = await invoke(endpoint, "Tools/clock", b"")
    journal = (
        pb.RunCommandMessage(result_completion_id=1, name="timestamp"),
        pb.RunCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b"1700000000.5")),
    )
    replayed = await invoke(endpoint, "Tools/clock", b"", *journal)

    run, proposal, _ = fresh
    assert isinstance(run, pb.RunCommandMessage) and run.name == "timestamp"
    assert isinstance(proposal, pb.ProposeRunCompletionMessage)
    assert abs(float(proposal.value) - time.time()) < 60
    assert output_value(replayed) == b"1700000000.5"


# --- combinators ---------------------------------------------------------------------------


async def test_gather_suspends_on_all_pending_results(endpoint: str) -> None:
    v6 = await invoke(endpoint, "Tools/both_sleeps", b"")
    v7 = await invoke(endpoint, "Tools/both_sleeps", b"", version=7)

    suspension = v6[-1]
    assert isinstance(suspension, pb.SuspensionMessage) and sorted(suspension.waiting_completions) == [1, 2]
    v7_suspension = v7[-1]
    assert isinstance(v7_suspension, pb.SuspensionMessage)
    [all_of] = v7_suspension.awaiting_on.nested_futures
    assert all_of.combinator_type == pb.ALL_COMPLETED and sorted(all_of.waiting_completions) == [1, 2]


async def test_gather_completes_once_every_result_is_journaled(endpoint: str) -> None:
    journal = (
        pb.SleepCommandMessage(result_completion_id=1),
        pb.SleepCommandMessage(result_completion_id=2),
        pb.SleepCompletionNotificationMessage(completion_id=2, void=pb.Void()),
        pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void()),
    )

    assert output_value(await invoke(endpoint, "Tools/both_sleeps", b"", *journal)) == b'"both"'


async def test_select_returns_the_first_completed_name(endpoint: str) -> None:
    journal = (
        pb.SleepCommandMessage(result_completion_id=1),
        pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void()),
    )

    assert output_value(await invoke(endpoint, "Tools/race", b"", *journal)) == b'["timeout", null]'


# --- awakeables, calls, signals ----------------------------------------------------------------


async def test_awakeable_resolves_from_its_signal(endpoint: str) -> None:
    journal = (pb.SignalNotificationMessage(idx=17, value=pb.Value(content=b'"yes"')),)

    value = output_value(await invoke(endpoint, "Tools/awakeable_value", b"", *journal)).decode()

    assert value.startswith('"sign_1') and value.endswith(' yes"')


async def test_service_call_journals_the_call_and_returns_its_result(endpoint: str) -> None:
    fresh = await invoke(endpoint, "Tools/call_greeter", b'"bo"')
    journal = (
        pb.CallCommandMessage(
            service_name="Tools", handler_name="greet_back", parameter=b'"bo"', invocation_id_notification_idx=1, result_completion_id=2
        ),
        pb.CallCompletionNotificationMessage(completion_id=2, value=pb.Value(content=b'"hi bo"')),
    )
    replayed = await invoke(endpoint, "Tools/call_greeter", b'"bo"', *journal)

    call = fresh[0]
    assert isinstance(call, pb.CallCommandMessage)
    assert (call.service_name, call.handler_name, call.parameter) == ("Tools", "greet_back", b'"bo"')
    assert output_value(replayed) == b'"hi bo"'


async def test_failed_call_raises_terminal_error_in_the_caller(endpoint: str) -> None:
    journal = (
        pb.CallCommandMessage(
            service_name="Tools", handler_name="greet_back", parameter=b'"x"', invocation_id_notification_idx=1, result_completion_id=2
        ),
        pb.CallCompletionNotificationMessage(completion_id=2, failure=pb.Failure(code=404, message="gone")),
    )

    assert output_value(await invoke(endpoint, "Tools/catch_call_failure", b"", *journal)) == b'"404 gone"'


async def test_delayed_send_sets_an_absolute_invoke_time(endpoint: str) -> None:
    before_ms = int(time.time() * 1000)

    send = (await invoke(endpoint, "Tools/send_later", b'"al"'))[0]

    assert isinstance(send, pb.OneWayCallCommandMessage)
    assert (send.service_name, send.handler_name, send.idempotency_key) == ("Tools", "greet_back", "once")
    assert before_ms + 10_000 <= send.invoke_time <= int(time.time() * 1000) + 10_000


async def test_cancel_complete_awakeables_and_attach_are_journaled(endpoint: str) -> None:
    messages = await invoke(endpoint, "Tools/chores", b'"inv_target"')

    cancel, resolve, reject, attach = messages[:4]
    assert isinstance(cancel, pb.SendSignalCommandMessage) and (cancel.target_invocation_id, cancel.idx) == ("inv_target", 1)
    assert isinstance(resolve, pb.CompleteAwakeableCommandMessage) and resolve.value.content == b'{"ok": true}'
    assert isinstance(reject, pb.CompleteAwakeableCommandMessage) and (reject.failure.code, reject.failure.message) == (451, "no")
    assert isinstance(attach, pb.AttachInvocationCommandMessage) and attach.invocation_id == "inv_target"


# --- types and the request ---------------------------------------------------------------------


async def test_pydantic_input_and_dataclass_output(endpoint: str) -> None:
    value = output_value(await invoke(endpoint, "Tools/models", b'{"amount": 3.7, "currency": "EUR"}'))

    assert value == b'{"x": 3, "y": 3}'


async def test_request_exposes_id_headers_and_body(endpoint: str) -> None:
    value = output_value(await invoke(endpoint, "Tools/echo_request", b"raw"))

    assert value == b'{"id": "%s", "headers": {}, "body": "raw"}' % str(INVOCATION_ID).encode()


# --- objects and workflows -----------------------------------------------------------------------


async def test_object_state_round_trips_pydantic_models(endpoint: str) -> None:
    state = [pb.StartMessage.StateEntry(key=b"total", value=b'{"amount":1.5,"currency":"EUR"}')]

    messages = await invoke(endpoint, "Cart/add", b'{"amount": 2, "currency": "EUR"}', state_map=state, key="c1")

    get, set_state = messages[:2]
    assert isinstance(get, pb.GetEagerStateCommandMessage)
    assert isinstance(set_state, pb.SetStateCommandMessage) and set_state.key == b"total"
    assert set_state.value.content == b'{"amount":3.5,"currency":"EUR"}'
    assert output_value(messages) == b'{"amount":3.5,"currency":"EUR"}'


async def test_shared_handlers_get_read_only_contexts() -> None:
    assert not hasattr(ObjectSharedContext, "set")
    assert not hasattr(WorkflowSharedContext, "clear_all")
    assert hasattr(ObjectContext, "set") and hasattr(WorkflowContext, "promise")


async def test_shared_object_handler_reads_eager_state(endpoint: str) -> None:
    state = [pb.StartMessage.StateEntry(key=b"total", value=b'{"amount":4,"currency":"EUR"}')]

    assert output_value(await invoke(endpoint, "Cart/total", b"", state_map=state, key="c1")) == b"4.0"


async def test_workflow_click_completes_the_promise(endpoint: str) -> None:
    messages = await invoke(endpoint, "Signup/click", b'"s3cret"', key="u1")

    complete = messages[0]
    assert isinstance(complete, pb.CompletePromiseCommandMessage)
    assert (complete.key, complete.completion_value.content) == ("clicked", b'"s3cret"')


async def test_workflow_run_reads_the_resolved_promise(endpoint: str) -> None:
    journal = (
        pb.GetPromiseCommandMessage(key="clicked", result_completion_id=1),
        pb.GetPromiseCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b'"s3cret"')),
    )

    assert output_value(await invoke(endpoint, "Signup/run", b'"s3cret"', *journal, key="u1")) == b"true"


async def test_peek_of_an_unresolved_promise_is_none(endpoint: str) -> None:
    journal = (
        pb.PeekPromiseCommandMessage(key="clicked", result_completion_id=1),
        pb.PeekPromiseCompletionNotificationMessage(completion_id=1, void=pb.Void()),
    )

    assert output_value(await invoke(endpoint, "Signup/peek", b"", *journal, key="u1")) == b""


async def test_run_typed_rejects_arguments_in_place_of_options() -> None:
    bad = sdk.Service("Bad")

    @bad.handler()
    async def misuse(ctx: Context) -> None:
        await ctx.run_typed("x", print, "not options")  # type: ignore[arg-type]

    async for base_url in serve(sdk.app([bad])):
        [error] = await invoke(base_url, "Bad/misuse", b"")
        assert isinstance(error, pb.ErrorMessage) and "RunOptions" in error.message
