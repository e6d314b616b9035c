"""Services on duro's SDK that exercise what the seed examples do not: timers, awakeables, retried runs, terminal errors, calls, cancellation.

Side effects append a tab-separated line to the file named by
DURO_EXAMPLES_SIDE_EFFECT_LOG (the same variable the examples use), so a test
can count executions and read values such as awakeable ids.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import sdk as restate
from examples.services import get_total, record_side_effect
from sdk import Context, ObjectContext, RunOptions, TerminalError

FLAKY_FAILURES_BEFORE_SUCCESS = 2
_flaky_executions: Counter[str] = Counter()

sdk_test_service = restate.Service("SdkTestService")


@sdk_test_service.handler()
async def sleep_then_answer(ctx: Context, millis: int) -> str:
    """Sleeps durably for `millis` and answers "slept"."""
    await ctx.sleep(timedelta(milliseconds=millis))
    return "slept"


@sdk_test_service.handler()
async def await_awakeable(ctx: Context, tag: str) -> str:
    """Creates an awakeable, publishes its id (side effect "awakeable"), answers with the value it is resolved with."""
    awakeable_id, value = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", record_side_effect, RunOptions(), "awakeable", tag, awakeable_id)
    return "resolved with " + await value


def _flaky_action(tag: str) -> int:
    _flaky_executions[tag] += 1
    execution = _flaky_executions[tag]
    record_side_effect("flaky", tag, str(execution))
    if execution <= FLAKY_FAILURES_BEFORE_SUCCESS:
        raise RuntimeError(f"flaky failure {execution} of {tag}")
    return execution


@sdk_test_service.handler()
async def flaky_run(ctx: Context, tag: str) -> int:
    """Runs an action that fails twice, then succeeds; answers the execution count that succeeded."""
    options: RunOptions[int] = RunOptions(max_attempts=5, initial_retry_interval=timedelta(milliseconds=20))
    return await ctx.run_typed("flaky", _flaky_action, options, tag)


def _always_failing(tag: str) -> str:
    record_side_effect("always_failing", tag)
    raise RuntimeError(f"always failing {tag}")


@sdk_test_service.handler()
async def exhausted_run(ctx: Context, tag: str) -> str:
    """Runs an action that always fails, with max_attempts=3: the failure becomes terminal."""
    options: RunOptions[str] = RunOptions(max_attempts=3, initial_retry_interval=timedelta(milliseconds=20))
    try:
        return await ctx.run_typed("always", _always_failing, options, tag)
    except TerminalError as error:
        return f"gave up: {error.message}"


@sdk_test_service.handler()
async def fail_with(ctx: Context, status_code: int) -> str:
    """Fails terminally with `status_code`."""
    raise TerminalError(f"failed on purpose with {status_code}", status_code=status_code)


@sdk_test_service.handler()
async def total_of_cart(ctx: Context, cart_key: str) -> float:
    """Calls ShoppingCart/{cart_key}/get_total (a handler of the examples' deployment)."""
    return await ctx.object_call(get_total, key=cart_key, arg=None)


@sdk_test_service.handler()
async def sleep_until_cancelled(ctx: Context, tag: str) -> str:
    """Sleeps for an hour; on cancellation records "cancelled" and fails with 409."""
    try:
        await ctx.sleep(timedelta(hours=1))
    except TerminalError as error:
        await ctx.run_typed("compensate", record_side_effect, RunOptions(), "cancelled", tag, str(error.status_code))
        raise
    return "woke up"


counter_object = restate.VirtualObject("SdkTestCounter")


@counter_object.handler()
async def increment(ctx: ObjectContext, delta: int) -> int:
    """Adds `delta` to the counter and answers the new value; also keeps the state keys listing honest."""
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    ctx.set("last_delta", delta)
    return value


@counter_object.handler()
async def reset(ctx: ObjectContext) -> list[str]:
    """Clears all state and answers the keys that were set before."""
    keys = await ctx.state_keys()
    ctx.clear_all()
    return sorted(keys)


app = restate.app([sdk_test_service, counter_object])
