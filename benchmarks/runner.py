"""Runs a benchmark plan: sessions of (runtime, repetition, scenarios), each on a freshly started runtime and service endpoint.

With `restart="run"` every (scenario, repetition, runtime) gets its own fresh
runtime, ordered scenario by scenario and, inside, duro, restate, duro,
restate, ... so the two runtimes of a pair run close in time. With
`restart="repetition"` one runtime per (repetition, runtime) runs all load
scenarios on fresh keys (faster; peak RSS is then cumulative). The memory
scenario always gets a runtime of its own. Results are appended to
`results.json` after every run, so an interrupted benchmark keeps what it got.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from benchmarks.endpoint import EndpointProcess
from benchmarks.loadgen import LoadLimits, LoadResult, run_count, run_load
from benchmarks.process_stats import CpuWindow, ProcessTree
from benchmarks.runtimes import Runtime, RuntimeOptions, create_runtime, http_json, register, wait_for
from benchmarks.scenarios import SEND_KEYS, Scenario, send_key_path
from benchmarks.stats import latency_summary_ms

MIB = 1024 * 1024
RestartPolicy = Literal["run", "repetition"]


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    out_dir: Path
    repetitions: int = 3
    limits: LoadLimits = field(default_factory=LoadLimits)
    sdk: str = "official"
    use_http_11: bool = False
    restart: RestartPolicy = "run"
    memory_invocations: int = 100_000
    memory_concurrency: int = 200
    memory_timeout_s: float = 1800.0
    send_drain_timeout_s: float = 120.0
    routable_timeout_s: float = 60.0
    keep_data: bool = False
    runtime_options: RuntimeOptions = field(default_factory=RuntimeOptions)
    reference: str = "restate"  # the runtime the ratios divide by

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise ValueError(f"repetitions must be at least 1, got {self.repetitions}")
        if self.memory_invocations < 1 or self.memory_concurrency < 1:
            raise ValueError(
                f"memory invocations and concurrency must be at least 1, got {self.memory_invocations} and {self.memory_concurrency}"
            )


@dataclass(frozen=True)
class Session:
    """One fresh runtime and endpoint, and the scenarios run on them."""

    runtime: str
    repetition: int
    scenarios: tuple[Scenario, ...]

    @property
    def label(self) -> str:
        first = self.scenarios[0].name if len(self.scenarios) == 1 else "all"
        return f"{first}-r{self.repetition}-{self.runtime}"


def plan_sessions(config: BenchConfig) -> list[Session]:
    load = tuple(s for s in config.scenarios if s.kind != "memory")
    memory = tuple(s for s in config.scenarios if s.kind == "memory")
    reps = range(1, config.repetitions + 1)
    if config.restart == "run":
        return [Session(runtime, rep, (scenario,)) for scenario in config.scenarios for rep in reps for runtime in config.runtimes]
    grouped = [Session(runtime, rep, load) for rep in reps for runtime in config.runtimes] if load else []
    return grouped + [Session(runtime, rep, (scenario,)) for scenario in memory for rep in reps for runtime in config.runtimes]


def log_line(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_plan(config: BenchConfig, on_run: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Runs every session; calls `on_run` with each run's record as soon as it is complete."""
    records: list[dict[str, Any]] = []
    for session in plan_sessions(config):
        for record in run_session(config, session):
            records.append(record)
            on_run(record)
    return records


def run_session(config: BenchConfig, session: Session) -> list[dict[str, Any]]:
    run_dir = config.out_dir / "runs" / session.label
    run_dir.mkdir(parents=True, exist_ok=True)
    runtime = create_runtime(session.runtime, run_dir, config.runtime_options)
    endpoint = EndpointProcess(config.sdk, run_dir / "endpoint.log")
    records: list[dict[str, Any]] = []
    try:
        log_line(f"starting {session.runtime} for {session.label}")
        _start(runtime, endpoint, config)
        description = runtime.describe()
        for scenario in session.scenarios:
            records.append(_run_scenario_safely(config, session, scenario, runtime, endpoint, description))
    except Exception as exc:
        log_line(f"{session.label} failed to start: {exc}")
        records.extend(_failed_record(session, scenario, f"start failed: {exc}") for scenario in session.scenarios[len(records) :])
    finally:
        endpoint.stop()
        runtime.stop()
        if not config.keep_data:
            shutil.rmtree(run_dir / "data", ignore_errors=True)
    return records


def _start(runtime: Runtime, endpoint: EndpointProcess, config: BenchConfig) -> None:
    runtime.start()
    endpoint.start()
    register(runtime, endpoint.uri, config.use_http_11)
    url = f"{runtime.ingress_url}/Greeter/greet"
    wait_for(
        lambda: http_json("POST", url, "ready", timeout_s=5)[0] == 200, config.routable_timeout_s, f"{runtime.name} to route Greeter/greet"
    )


def _run_scenario_safely(
    config: BenchConfig, session: Session, scenario: Scenario, runtime: Runtime, endpoint: EndpointProcess, description: dict[str, Any]
) -> dict[str, Any]:
    log_line(f"{scenario.name} repetition {session.repetition} on {session.runtime}")
    try:
        record = _run_scenario(config, session, scenario, runtime, endpoint)
    except Exception as exc:
        record = _failed_record(session, scenario, f"{type(exc).__name__}: {exc}")
    record["runtime_description"] = description
    log_line(_one_line(record))
    return record


def _failed_record(session: Session, scenario: Scenario, error: str) -> dict[str, Any]:
    return {"scenario": scenario.name, "runtime": session.runtime, "repetition": session.repetition, "error": error, "metrics": {}}


def _one_line(record: dict[str, Any]) -> str:
    if record.get("error"):
        return f"  {record['scenario']} {record['runtime']}: ERROR {record['error']}"
    m = record["metrics"]
    return f"  {record['scenario']} {record['runtime']}: {m.get('throughput_per_s', 0):.1f}/s p50 {m.get('p50_ms', 0):.1f} ms p99 {m.get('p99_ms', 0):.1f} ms runtime cpu {m.get('runtime_cpu_s', 0):.2f} s peak rss {m.get('runtime_peak_rss_mib', 0):.0f} MiB"


def _run_scenario(config: BenchConfig, session: Session, scenario: Scenario, runtime: Runtime, endpoint: EndpointProcess) -> dict[str, Any]:
    run_tag = f"{session.runtime}-r{session.repetition}-{uuid.uuid4().hex[:8]}"
    runtime_tree = ProcessTree(runtime.root_pid())
    windows = {
        "runtime": CpuWindow(runtime_tree),
        "service": CpuWindow(ProcessTree(endpoint.pid)),
        "loadgen": CpuWindow(ProcessTree(os.getpid(), include_children=False)),
    }
    if scenario.kind == "memory":
        return _run_memory(config, session, scenario, runtime, runtime_tree, windows, run_tag)
    loadavg_before = os.getloadavg()
    whole_cpu = CpuWindow(runtime_tree)  # send: from the first request to the last send run, warm-up and drain included
    whole_cpu.begin()
    whole_started = time.perf_counter()
    result = asyncio.run(run_load(runtime.ingress_url, scenario.factory(run_tag), config.limits, list(windows.values())))
    metrics = _load_metrics(result, windows, runtime_tree)
    if scenario.steps is not None and metrics["p50_ms"] is not None:
        metrics["steps"] = scenario.steps
        metrics["ms_per_step_p50"] = metrics["p50_ms"] / scenario.steps
        metrics["steps_per_s"] = metrics["throughput_per_s"] * scenario.steps
    if scenario.kind == "send":
        metrics.update(asyncio.run(_drain_sends(runtime.ingress_url, run_tag, result.requests_ok, config.send_drain_timeout_s)))
        whole_cpu.end()
        metrics.update(whole_send_metrics(metrics, time.perf_counter() - whole_started, whole_cpu.cpu_s or 0.0))
    return _record(session, scenario, run_tag, result, metrics, loadavg_before)


def _record(
    session: Session,
    scenario: Scenario,
    run_tag: str,
    result: LoadResult,
    metrics: dict[str, Any],
    loadavg_before: tuple[float, float, float],
) -> dict[str, Any]:
    error = result.aborted or (None if result.latencies_s else "no request completed inside the measured window")
    return {
        "scenario": scenario.name,
        "runtime": session.runtime,
        "repetition": session.repetition,
        "run_tag": run_tag,
        "error": error,
        "metrics": metrics,
        "latency_ms": latency_summary_ms(result.latencies_s),
        "errors": dict(result.errors),
        "loadavg_before": list(loadavg_before),
        "loadavg_after": list(os.getloadavg()),
    }


def _load_metrics(result: LoadResult, windows: dict[str, CpuWindow], runtime_tree: ProcessTree) -> dict[str, Any]:
    summary = latency_summary_ms(result.latencies_s)
    requests = len(result.latencies_s)
    metrics: dict[str, Any] = {
        "requests": requests,
        "window_s": result.window_s,
        "throughput_per_s": result.throughput_per_s,
        "p50_ms": summary.get("p50"),
        "p90_ms": summary.get("p90"),
        "p99_ms": summary.get("p99"),
        "p99_9_ms": summary.get("p99_9"),
        "mean_ms": summary.get("mean"),
        "requests_sent": result.requests_sent,
        "requests_ok": result.requests_ok,
        "error_count": sum(result.errors.values()),
        "runtime_peak_rss_mib": runtime_tree.peak_rss_bytes() / MIB,
        "runtime_rss_mib": runtime_tree.rss_bytes() / MIB,
    }
    for role, window in windows.items():
        metrics[f"{role}_cpu_s"] = window.cpu_s
        metrics[f"{role}_cpu_ms_per_request"] = (window.cpu_s or 0.0) * 1000 / requests if requests else None
    return metrics


def whole_send_metrics(metrics: dict[str, Any], elapsed_s: float, runtime_cpu_s: float) -> dict[str, Any]:
    """Sends run per second and the runtime's CPU per send run, from the first request until every accepted send had run.

    A runtime may answer a send early and run it later; counted over the window alone, that deferred work would be
    missing from its CPU and its throughput would count promises, not runs. None when the sends did not all run.
    """
    if not metrics.get("send_drained") or elapsed_s <= 0:
        return {"sends_run_per_s": None, "runtime_cpu_ms_per_send_run": None}
    run = metrics["sends_completed"]
    return {"sends_run_per_s": run / elapsed_s, "runtime_cpu_ms_per_send_run": runtime_cpu_s * 1000 / run if run else None}


async def _drain_sends(ingress_url: str, run_tag: str, accepted: int, timeout_s: float) -> dict[str, Any]:
    """Waits until the counters of the send scenario add up to the accepted sends; returns how long that took."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    total = 0
    async with aiohttp.ClientSession(skip_auto_headers=("Content-Type",), timeout=aiohttp.ClientTimeout(total=30)) as session:
        while time.monotonic() < deadline:
            total = sum(
                await asyncio.gather(
                    *(_counter_value(session, ingress_url + send_key_path(run_tag, key) + "/get") for key in range(SEND_KEYS))
                )
            )
            if total >= accepted:
                break
            await asyncio.sleep(0.2)
    drained = total >= accepted
    return {
        "sends_accepted": accepted,
        "sends_completed": total,
        "send_drain_s": time.perf_counter() - started if drained else None,
        "send_drained": drained,
    }


async def _counter_value(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(url) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered HTTP {response.status}: {body[:200]!r}")
        return int(body)


def _run_memory(
    config: BenchConfig,
    session: Session,
    scenario: Scenario,
    runtime: Runtime,
    runtime_tree: ProcessTree,
    windows: dict[str, CpuWindow],
    run_tag: str,
) -> dict[str, Any]:
    """Completes `memory_invocations` calls, then reads the runtime's RSS; CPU covers the whole run."""
    loadavg_before = os.getloadavg()
    rss_before = runtime_tree.rss_bytes()
    for window in windows.values():
        window.begin()
    started = time.perf_counter()
    result = asyncio.run(
        run_count(
            runtime.ingress_url,
            scenario.factory(run_tag),
            config.memory_invocations,
            config.memory_concurrency,
            config.memory_timeout_s,
            config.limits.request_timeout_s,
        )
    )
    elapsed_s = time.perf_counter() - started
    for window in windows.values():
        window.end()
    completed = result.requests_ok
    summary = latency_summary_ms(result.latencies_s)
    metrics: dict[str, Any] = {
        "invocations_target": config.memory_invocations,
        "invocations_completed": completed,
        "concurrency": config.memory_concurrency,
        "elapsed_s": elapsed_s,
        "throughput_per_s": completed / elapsed_s if elapsed_s > 0 else 0.0,
        "p50_ms": summary.get("p50"),
        "p90_ms": summary.get("p90"),
        "p99_ms": summary.get("p99"),
        "runtime_rss_before_mib": rss_before / MIB,
        "runtime_rss_mib": runtime_tree.rss_bytes() / MIB,
        "runtime_peak_rss_mib": runtime_tree.peak_rss_bytes() / MIB,
        "error_count": sum(result.errors.values()),
    }
    for role, window in windows.items():
        metrics[f"{role}_cpu_s"] = window.cpu_s
        metrics[f"{role}_cpu_ms_per_request"] = (window.cpu_s or 0.0) * 1000 / completed if completed else None
    record = _record(session, scenario, run_tag, result, metrics, loadavg_before)
    if record["error"] is None and completed < config.memory_invocations:
        record["error"] = f"only {completed} of {config.memory_invocations} invocations completed within {config.memory_timeout_s} s"
    return record
