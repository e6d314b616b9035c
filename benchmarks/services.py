"""The benchmark's services, written once against the Restate Python SDK API and built for either SDK.

`build_services(restate)` takes the SDK module: the official `restate` package
or duro's `sdk` (same API). Services:

- `Greeter.greet(name) -> str`: a stateless call, no journal entry;
- `Counter` (virtual object): `add(delta) -> int` reads, adds and writes state
  `count`; `get() -> int` (shared) reads it;
- `ThreeSteps` (workflow): `run(name) -> str` takes three `ctx.run` steps;
- `Steps.steps(n) -> int`: n sequential `ctx.run` steps (cost per step);
- `IngestSink` (virtual object): `record(event)` counts the events of its key in
  state `count` and notes `seq`, the producer's send time `t` (ns) and its own
  time in the file named by `DURO_BENCH_INGEST_LOG` (the Kafka ingest
  benchmark, `benchmarks/kafka_ingest.py`, reads it).
"""

from __future__ import annotations

import importlib
import os
import time
from types import ModuleType
from typing import IO, Any

SDK_MODULES = {"official": "restate", "duro": "sdk"}
MAX_STEPS = 10_000
INGEST_LOG_ENV = "DURO_BENCH_INGEST_LOG"
_ingest_log: IO[str] | None = None


def build_services(restate: ModuleType) -> list[Any]:
    return [_greeter(restate), _counter(restate), _three_steps(restate), _steps(restate), _ingest_sink(restate)]


def build_app(sdk_name: str) -> Any:
    """The ASGI app of all benchmark services on SDK `sdk_name` ("official" or "duro")."""
    if sdk_name not in SDK_MODULES:
        raise ValueError(f"unknown SDK {sdk_name!r}; expected one of {sorted(SDK_MODULES)}")
    restate = importlib.import_module(SDK_MODULES[sdk_name])
    return restate.app(services=build_services(restate))


def _greeter(restate: ModuleType) -> Any:
    greeter = restate.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: Any, name: str) -> str:
        return f"Hello {name}!"

    return greeter


def _counter(restate: ModuleType) -> Any:
    counter = restate.VirtualObject("Counter")

    @counter.handler()
    async def add(ctx: Any, delta: int) -> int:
        value = (await ctx.get("count", type_hint=int) or 0) + delta
        ctx.set("count", value)
        return value

    @counter.handler(kind="shared")
    async def get(ctx: Any) -> int:
        return await ctx.get("count", type_hint=int) or 0

    return counter


async def _step_value(index: int) -> int:
    return index


def _three_steps(restate: ModuleType) -> Any:
    workflow = restate.Workflow("ThreeSteps")

    @workflow.main()
    async def run(ctx: Any, name: str) -> str:
        first = await ctx.run_typed("reserve", _step_value, restate.RunOptions(), 1)
        second = await ctx.run_typed("charge", _step_value, restate.RunOptions(), 2)
        third = await ctx.run_typed("confirm", _step_value, restate.RunOptions(), 3)
        return f"{name}: {first + second + third}"

    return workflow


def _steps(restate: ModuleType) -> Any:
    steps_service = restate.Service("Steps")

    @steps_service.handler()
    async def steps(ctx: Any, n: int) -> int:
        if not 0 <= n <= MAX_STEPS:
            raise restate.TerminalError(f"n must be between 0 and {MAX_STEPS}, got {n}")
        total = 0
        for index in range(n):
            total += await ctx.run_typed(f"step-{index}", _step_value, restate.RunOptions(), index)
        return total

    return steps_service


def _note_handled(event: dict[str, int]) -> None:
    """Append `seq produced_ns handled_ns` (a replayed attempt notes the event again; readers keep the first)."""
    global _ingest_log
    path = os.environ.get(INGEST_LOG_ENV)
    if not path:
        return
    if _ingest_log is None:
        _ingest_log = open(path, "a", buffering=1, encoding="ascii")  # noqa: SIM115 - one line-buffered file for the process's life
    _ingest_log.write(f"{event['seq']} {event['t']} {time.time_ns()}\n")


def _ingest_sink(restate: ModuleType) -> Any:
    sink = restate.VirtualObject("IngestSink")

    @sink.handler()
    async def record(ctx: Any, event: dict[str, int]) -> None:
        count = (await ctx.get("count", type_hint=int) or 0) + 1
        ctx.set("count", count)
        _note_handled(event)

    return sink


def official_app() -> Any:
    """ASGI app factory for `hypercorn 'benchmarks.services:official_app()'`."""
    return build_app("official")


def duro_app() -> Any:
    """ASGI app factory for `hypercorn 'benchmarks.services:duro_app()'`."""
    return build_app("duro")
