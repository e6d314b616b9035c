"""Test services written with the official Restate Python SDK (`restate-sdk`), served by hypercorn.

Side effects append a line to the file named by `DURO_TEST_SIDE_EFFECTS` so
tests can count how often each one really ran.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

from tests.services.sdk_choice import restate

Context = restate.Context
ObjectContext = restate.ObjectContext
ObjectSharedContext = restate.ObjectSharedContext
TerminalError = restate.TerminalError
WorkflowContext = restate.WorkflowContext
WorkflowSharedContext = restate.WorkflowSharedContext


def record_side_effect(line: str) -> None:
    path = os.environ.get("DURO_TEST_SIDE_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as sink:
            sink.write(line + "\n")


def count_side_effects(prefix: str) -> int:
    path = os.environ.get("DURO_TEST_SIDE_EFFECTS")
    if not path or not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as source:
        return sum(1 for line in source if line.startswith(prefix))


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello {name}!"


@greeter.handler()
async def trace_context(ctx: Context) -> dict[str, str | None]:
    """The W3C trace context the runtime handed to this attempt (request headers) and stored with the invocation."""
    request = ctx.request()
    return {"attempt": request.attempt_headers.get("traceparent"), "invocation": request.headers.get("traceparent")}


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@counter.handler()
async def reset(ctx: ObjectContext) -> None:
    ctx.clear_all()


steps = restate.Service("Steps")


@steps.handler()
async def run_steps(ctx: Context, n: int) -> int:
    record_side_effect(f"attempt {ctx.request().id}")  # not journaled: one line per attempt
    total = 0
    for i in range(n):

        def step(i: int = i) -> int:
            record_side_effect(f"step {ctx.request().id} {i}")
            return i

        total += await ctx.run_typed(f"step-{i}", step)
    return total


@steps.handler()
async def sleep_then(ctx: Context, millis: int) -> str:
    await ctx.sleep(timedelta(milliseconds=millis))
    return "slept"


@steps.handler()
async def fail_terminal(ctx: Context, message: str) -> str:
    raise TerminalError(message, status_code=418)


@steps.handler()
async def flaky(ctx: Context, name: str) -> str:
    """Fails (retryably) the first two times for `name`, then succeeds."""

    def attempt() -> str:
        seen = count_side_effects(f"flaky {name}")
        record_side_effect(f"flaky {name}")
        if seen < 2:
            raise RuntimeError(f"flaky failure {seen + 1}")
        return f"ok after {seen + 1}"

    return await ctx.run_typed("flaky", attempt)


@steps.handler()
async def wait_awakeable(ctx: Context, name: str) -> str:
    awakeable_id, promise = ctx.awakeable(type_hint=str)

    def publish() -> None:
        record_side_effect(f"awakeable {name} {awakeable_id}")

    await ctx.run_typed("publish", publish)
    return await promise


@steps.handler()
async def call_counter(ctx: Context, key: str) -> int:
    return await ctx.object_call(add, key=key, arg=1)


@steps.handler()
async def send_in_order(ctx: Context, key: str) -> None:
    for i in range(5):
        ctx.object_send(append, key=key, arg=i)


@steps.handler()
async def delayed_send(ctx: Context, key: str) -> None:
    ctx.object_send(append, key=key, arg=99, send_delay=timedelta(milliseconds=500))


recorder = restate.VirtualObject("Recorder")


@recorder.handler()
async def append(ctx: ObjectContext, item: int) -> list[int]:
    items = await ctx.get("items", type_hint=list[int]) or []
    items.append(item)
    ctx.set("items", items)
    return items


@recorder.handler(kind="shared")
async def items(ctx: ObjectSharedContext) -> list[int]:
    return await ctx.get("items", type_hint=list[int]) or []


durable = restate.VirtualObject("Durable")


@durable.handler()
async def step_sleep_step(ctx: ObjectContext, millis: int) -> str:
    """A journaled side effect, state, a durable sleep, then the answer: the crash test's handler."""

    def charge() -> str:
        record_side_effect(f"charge {ctx.key()}")
        return "charged"

    charged = await ctx.run_typed("charge", charge)
    ctx.set("status", charged)
    await ctx.sleep(timedelta(milliseconds=millis))
    return f"{charged} then slept"


@durable.handler(kind="shared")
async def status(ctx: ObjectSharedContext) -> str:
    return await ctx.get("status", type_hint=str) or "none"


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: WorkflowContext, email: str) -> str:
    def create() -> None:
        record_side_effect(f"signup-create {ctx.key()}")

    await ctx.run_typed("create", create)
    ctx.set("stage", "waiting")
    clicked = await ctx.promise("clicked", type_hint=str).value()
    ctx.set("stage", "done")
    return f"{email} verified with {clicked}"


@signup.handler()
async def click(ctx: WorkflowSharedContext, secret: str) -> None:
    await ctx.promise("clicked", type_hint=str).resolve(secret)


@signup.handler()
async def stage(ctx: WorkflowSharedContext) -> str:
    return await ctx.get("stage", type_hint=str) or "new"


stalling = restate.VirtualObject("Stalling")


@stalling.handler()
async def hang_first(ctx: ObjectContext, tag: str) -> str:
    """Never answers on its first attempt for `tag` (a handler stuck outside the SDK's control); answers on the next ones."""
    record_side_effect(f"hang_first {tag}")
    attempts = count_side_effects(f"hang_first {tag}")
    if attempts == 1:
        await asyncio.sleep(3600)
    return f"{tag} answered on attempt {attempts}"


@stalling.handler(kind="shared")
async def big_output(ctx: ObjectSharedContext, size: int) -> str:
    """Answers a string of `size` characters (a JSON string of size + 2 bytes)."""
    record_side_effect(f"big_output {size}")
    return "x" * size


deadlock = restate.VirtualObject("Deadlock")


@deadlock.handler()
async def call_self(ctx: ObjectContext, name: str) -> str:
    """Calls itself on its own key: the call waits in the key's inbox behind its caller for ever (a deadlock)."""
    record_side_effect(f"deadlock {ctx.key()} {name}")
    return await ctx.object_call(call_self, key=ctx.key(), arg=f"{name}-child")


@deadlock.handler()
async def echo(ctx: ObjectContext, text: str) -> str:
    return text


retries = restate.Service("Retries")


def _failing_attempt(ctx: Context, name: str) -> None:
    """Records `attempt <name> <wall-clock ms>` (not journaled: one line per attempt), then fails retryably."""
    import time

    record_side_effect(f"attempt {name} {time.time_ns() // 1_000_000}")
    raise RuntimeError(f"attempt of {name} fails")


@retries.handler(
    invocation_retry_policy=restate.InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        exponentiation_factor=2.0,
        max_interval=timedelta(seconds=10),
        max_attempts=3,
        on_max_attempts="kill",
    )
)
async def three_then_kill(ctx: Context, name: str) -> str:
    _failing_attempt(ctx, name)
    return "never"


@retries.handler()
async def default_policy(ctx: Context, name: str) -> str:
    _failing_attempt(ctx, name)
    return "never"


from tests.services.official_python_seeds import SEED_SERVICES  # noqa: E402

_IDENTITY_KEYS = [key for key in os.environ.get("DURO_TEST_IDENTITY_KEYS", "").split(",") if key]
"""Request identity public keys (publickeyv1_...): set, the endpoint refuses requests not signed by the runtime."""

app = restate.app(
    [greeter, counter, steps, recorder, durable, signup, stalling, deadlock, retries, *SEED_SERVICES],
    identity_keys=_IDENTITY_KEYS or None,
)
