"""The benchmark harness's pure parts and its load generator against a real local HTTP server."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import aiohttp.web
import pytest

from benchmarks.loadgen import JSON_HEADERS, LoadLimits, Request, run_count, run_load
from benchmarks.process_stats import CpuWindow, ProcessTree
from benchmarks.report import least_squares_line, render_markdown, with_comparisons
from benchmarks.runner import whole_send_metrics
from benchmarks.runtimes import DuroRuntime, RuntimeOptions, create_runtime, is_runtime_name
from benchmarks.scenarios import parse_scenarios
from benchmarks.stats import latency_summary_ms, pairwise_ratios, percentile

HANDLER_DELAY_S = 0.01


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 99.9) == 100.0
    assert percentile([7.0], 1) == 7.0
    assert math.isnan(percentile([], 50))


def test_latency_summary_in_milliseconds() -> None:
    summary = latency_summary_ms([0.001 * v for v in range(1, 101)])
    assert summary["count"] == 100
    assert summary["p50"] == pytest.approx(50.0)
    assert summary["p99"] == pytest.approx(99.0)
    assert summary["curve"][-1][0] == 99.99


def _run(scenario: str, repetition: int, runtime: str, throughput: float, error: str | None = None) -> dict:
    return {
        "scenario": scenario,
        "repetition": repetition,
        "runtime": runtime,
        "error": error,
        "metrics": {"throughput_per_s": throughput, "p50_ms": 1000 / throughput},
    }


def test_ratios_are_computed_pair_by_pair_and_skip_failed_runs() -> None:
    runs = [
        _run("greet", 1, "duro", 100), _run("greet", 1, "restate", 200),
        _run("greet", 2, "duro", 300), _run("greet", 2, "restate", 300),
        _run("greet", 3, "duro", 50, error="boom"), _run("greet", 3, "restate", 10),
    ]  # fmt: skip
    comparison = pairwise_ratios(runs, "duro", "restate")["greet"]
    assert comparison["pairs"] == 2
    throughput = comparison["metrics"]["throughput_per_s"]
    assert throughput["per_repetition"] == [0.5, 1.0]
    assert (throughput["median"], throughput["min"], throughput["max"]) == (0.75, 0.5, 1.0)
    markdown = render_markdown(with_comparisons({"runs": runs}))
    assert "| greet | 2 | 0.75 [0.50–1.00] |" in markdown
    assert "greet r3 duro: boom" in markdown


def test_two_worker_counts_run_side_by_side_with_one_as_the_reference(tmp_path) -> None:
    runs = [_run("greet", 1, "duro-w2", 180), _run("greet", 1, "duro-w1", 100)]
    document = with_comparisons({"config": {"reference": "duro-w1"}, "runs": runs})
    assert document["comparisons"]["duro-w2"]["greet"]["metrics"]["throughput_per_s"]["median"] == 1.8
    assert "### duro-w2 / duro-w1, pair by pair" in render_markdown(document)
    assert is_runtime_name("duro-w2") and not is_runtime_name("duro-w0") and not is_runtime_name("duro-wx")
    runtime = create_runtime("duro-w3", tmp_path, RuntimeOptions(partitions=6, duro_args=("--log-level", "info")))
    assert isinstance(runtime, DuroRuntime) and runtime.name == "duro-w3"
    assert list(runtime.extra_args) == ["--workers", "3", "--log-level", "info"]


def _send_run(repetition: int, runtime: str, accepted_per_s: float, elapsed_s: float, cpu_s: float, drained: bool = True) -> dict:
    metrics = {"throughput_per_s": accepted_per_s, "sends_completed": 1_000, "send_drained": drained, "send_drain_s": 1.0}
    metrics.update(whole_send_metrics(metrics, elapsed_s, cpu_s))
    return {"scenario": "send", "repetition": repetition, "runtime": runtime, "error": None, "metrics": metrics}


def test_sends_are_also_counted_until_every_accepted_send_ran() -> None:
    # Restate-like: accepts three times as fast, but the 1,000 sends take 20 s to run and 4 s of CPU; duro: 10 s, 1 s.
    runs = [
        _send_run(1, "duro", 100, 10.0, 1.0),
        _send_run(1, "restate", 300, 20.0, 4.0),
        _send_run(2, "duro", 100, 9.0, 2.0, drained=False),
    ]
    assert runs[0]["metrics"]["sends_run_per_s"] == 100.0 and runs[0]["metrics"]["runtime_cpu_ms_per_send_run"] == 1.0
    assert runs[2]["metrics"]["sends_run_per_s"] is None  # not all ran: no rate claimed
    document = with_comparisons({"runs": runs})
    metrics = document["comparisons"]["duro"]["send"]["metrics"]
    assert metrics["throughput_per_s"]["per_repetition"] == [pytest.approx(1 / 3)]
    assert metrics["sends_run_per_s"]["per_repetition"] == [2.0]
    assert metrics["runtime_cpu_ms_per_send_run"]["per_repetition"] == [0.25]
    markdown = render_markdown(document)
    assert "sends run per second 2.00, runtime CPU per send run 0.25" in markdown


def test_scenario_names_expand_and_reject_unknown_ones() -> None:
    names = [s.name for s in parse_scenarios("all", (1, 5))]
    assert names == ["greet", "counter-1000-keys", "counter-hot-key", "workflow-3-steps", "steps-1", "steps-5", "send", "memory"]
    assert parse_scenarios("steps-7")[0].steps == 7
    with pytest.raises(ValueError, match="unknown scenario 'grete'"):
        parse_scenarios("greet,grete")
    with pytest.raises(ValueError, match="steps-N"):
        parse_scenarios("steps-x")


def test_keys_are_fresh_per_run_tag() -> None:
    hot = parse_scenarios("counter-hot-key")[0]
    assert hot.factory("a")(0).path != hot.factory("b")(0).path
    workflow = parse_scenarios("workflow-3-steps")[0].factory("t")
    assert workflow(1).path != workflow(2).path


BUSY_CHILD = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("burned", flush=True)
sys.stdin.readline()
"""


def test_process_tree_accounts_a_busy_child() -> None:
    """The child burns 0.3 s of its own CPU between two lines of the test (events, not wall time, so a busy machine cannot shrink or stretch it)."""
    child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"  # the interpreter's start-up CPU stays outside the window
        own_tree = ProcessTree(os.getpid())
        assert child.pid in own_tree.pids()
        window = CpuWindow(ProcessTree(child.pid))
        window.begin()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burned\n"
        window.end()
        assert window.cpu_s is not None and 0.28 <= window.cpu_s < 0.6, window.cpu_s
        assert ProcessTree(child.pid).rss_bytes() > 1_000_000
        assert ProcessTree(child.pid).peak_rss_bytes() >= ProcessTree(child.pid).rss_bytes()
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert ProcessTree(child.pid).pids() == []


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """A real HTTP server: /ok sleeps then answers 200; /fail answers 500; /no-input rejects any content-type."""

    async def ok(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await asyncio.sleep(HANDLER_DELAY_S)
        return aiohttp.web.Response(text="ok")

    async def fail(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(status=500)

    async def no_input(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(status=415 if "Content-Type" in request.headers else 200)

    app = aiohttp.web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/fail", fail)
    app.router.add_post("/no-input", no_input)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_window_stops_at_max_requests_and_excludes_warmup(server: str) -> None:
    limits = LoadLimits(concurrency=4, warmup_s=0.2, duration_s=10.0, max_requests=40)
    started = time.monotonic()
    result = await run_load(server, lambda n: Request("/ok", b"1", JSON_HEADERS), limits)
    assert time.monotonic() - started < 5
    assert result.aborted is None and not result.errors
    assert 40 <= len(result.latencies_s) < 40 + limits.concurrency
    assert min(result.latencies_s) >= HANDLER_DELAY_S
    assert result.requests_ok == result.requests_sent > len(result.latencies_s)  # requests completed in the warm-up are not sampled
    assert result.throughput_per_s > 0


async def test_window_stops_at_duration(server: str) -> None:
    result = await run_load(server, lambda n: Request("/ok"), LoadLimits(concurrency=2, warmup_s=0.0, duration_s=0.3))
    assert 0.3 <= result.window_s < 1.0
    assert all(latency < 1.0 for latency in result.latencies_s)


async def test_errors_abort_the_run_and_bodyless_posts_carry_no_content_type(server: str) -> None:
    failing = await run_load(server, lambda n: Request("/fail"), LoadLimits(concurrency=2, warmup_s=0.0, duration_s=10.0, max_errors=5))
    assert failing.aborted is not None and "HTTP 500" in failing.aborted
    assert failing.errors["HTTP 500"] >= 5
    bodyless = await run_count(server, lambda n: Request("/no-input"), count=20, concurrency=2, timeout_s=10.0)
    assert not bodyless.errors and bodyless.requests_ok >= 20


def test_least_squares_line_recovers_cost_per_step() -> None:
    assert least_squares_line([(1, 12.0), (10, 30.0), (100, 210.0)]) == pytest.approx((10.0, 2.0))
    assert least_squares_line([(5, 1.0), (5, 2.0)]) is None
