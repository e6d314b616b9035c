"""The benchmark harness still works end to end: `python -m benchmarks smoke` on a real duro, real endpoint, real load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.endpoint import TYPESCRIPT_ENDPOINT
from tests.processes import REPO_ROOT

SMOKE_TIMEOUT_S = 120
EXPECTED_SCENARIOS = {"greet", "counter-1000-keys", "counter-hot-key", "workflow-3-steps", "steps-3", "send", "memory"}


def test_smoke_run_measures_every_scenario(tmp_path: Path) -> None:
    out_dir = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "smoke", "--out-dir", str(out_dir)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"smoke failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
    document = json.loads((out_dir / "results.json").read_text())
    runs = {run["scenario"]: run for run in document["runs"]}
    assert set(runs) == EXPECTED_SCENARIOS
    for name, run in runs.items():
        assert run["error"] is None, f"{name}: {run['error']}"
        assert run["runtime"] == "duro"
        assert run["metrics"]["throughput_per_s"] > 0, name
        assert run["metrics"]["runtime_cpu_s"] > 0, name
        assert run["metrics"]["runtime_peak_rss_mib"] > 10, name
        assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"], name
    send = runs["send"]["metrics"]
    assert send["send_drained"] and send["sends_completed"] == send["sends_accepted"] > 0
    assert runs["steps-3"]["metrics"]["ms_per_step_p50"] * 3 == pytest.approx(runs["steps-3"]["metrics"]["p50_ms"])
    assert runs["memory"]["metrics"]["invocations_completed"] >= 200
    report = (out_dir / "report.md").read_text()
    for name in EXPECTED_SCENARIOS - {"memory"}:
        assert f"| {name} | duro |" in report


def test_kafka_ingest_benchmark_runs_on_duro(tmp_path: Path, kafka_bootstrap: str) -> None:
    """`python -m benchmarks.kafka_ingest` end to end on duro alone, tiny: both phases measured, the report written."""
    out_dir = tmp_path / "kafka-bench"
    args = ["--runtimes", "duro", "--repetitions", "1", "--events", "200", "--keys", "20", "--paced-rate", "20", "--paced-s", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.kafka_ingest", *args, "--bootstrap", kafka_bootstrap, "--out-dir", str(out_dir)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"kafka_ingest failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
    (run,) = json.loads((out_dir / "results.json").read_text())["runs"]
    assert run["error"] is None and run["runtime"] == "duro"
    assert run["backlog"]["events"] == 200 and run["backlog"]["events_per_s"] > 0 and run["backlog"]["runtime_cpu_s"] > 0
    latency = run["paced"]["latency_ms"]
    assert run["paced"]["events"] == 40 and latency["count"] == 40 and 0 < latency["p50"] <= latency["p99"]
    assert "| duro #1 |" in (out_dir / "report.md").read_text()


@pytest.mark.skipif(not TYPESCRIPT_ENDPOINT.exists(), reason="the TypeScript endpoint is built by scripts/setup.d/20-typescript.sh")
def test_smoke_run_on_the_cheap_typescript_endpoint(tmp_path: Path) -> None:
    """The runtime-bound variant: the same scenarios served by the official TypeScript SDK on Node."""
    out_dir = tmp_path / "bench-ts"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "smoke", "--sdk", "typescript", "--out-dir", str(out_dir)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"smoke failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
    document = json.loads((out_dir / "results.json").read_text())
    assert document["config"]["sdk"] == "typescript"
    runs = {run["scenario"]: run for run in document["runs"]}
    assert set(runs) == EXPECTED_SCENARIOS and all(run["error"] is None for run in runs.values())
    assert runs["workflow-3-steps"]["metrics"]["service_cpu_s"] > 0, "the Node endpoint's CPU is accounted"


@pytest.mark.skipif(not TYPESCRIPT_ENDPOINT.exists(), reason="the TypeScript endpoint is built by scripts/setup.d/20-typescript.sh")
def test_cpu_cost_prints_the_runtimes_cpu_per_request(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu_cost", "--scenario", "counter-1000-keys", "--requests", "60", "--warmup-requests", "5",
         "--partitions", "4", "--concurrency", "4"],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"cpu_cost failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
    (line,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert line["scenario"] == "counter-1000-keys" and line["requests"] >= 60
    assert line["runtime_cpu_ms_per_request"] > 0 and line["endpoint_cpu_ms_per_request"] > 0 and line["throughput_per_s"] > 0


@pytest.mark.skipif(not TYPESCRIPT_ENDPOINT.exists(), reason="the TypeScript endpoint is built by scripts/setup.d/20-typescript.sh")
def test_flat_cost_measures_each_case_small_and_large(tmp_path: Path) -> None:
    """`python -m benchmarks.flat_cost`, tiny: preloaded keys read by the handler, a drained inbox, several deployments."""
    out = tmp_path / "flat.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.flat_cost", "--keys", "20,500", "--inbox", "120,400", "--inbox-window", "60",
         "--deployments", "1,3", "--requests", "60", "--warmup-requests", "5", "--partitions", "4", "--concurrency", "4",
         "--out", str(out)],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=2 * SMOKE_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, f"flat_cost failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
    document = json.loads(out.read_text())
    runs = {(run["case"], run["size"]): run for run in document["results"]}
    assert set(runs) == {("keys", 20), ("keys", 500), ("inbox", 120), ("inbox", 400), ("deployments", 1), ("deployments", 3)}
    for run in runs.values():
        assert run["invocations"] > 0 and run["runtime_cpu_ms_per_invocation"] > 0 and run["throughput_per_s"] > 0, run
    assert runs[("keys", 500)]["invocations"] >= 60
    assert [runs[("deployments", n)]["registered"] for n in (1, 3)] == [1, 3]
    large_inbox = runs[("inbox", 400)]
    tail = large_inbox["tail"]  # from the poll at or before the 60th-last completion to the first at or past the 12th-last
    assert large_inbox["queue_at_start"] <= 400 and tail["from_completed"] <= 400 - 60 <= tail["from_completed"] + tail["invocations"]
    assert tail["from_completed"] + tail["invocations"] >= 400 - 12
    cases = [row["case"] for row in document["ratios"]]
    assert cases == ["keys", "inbox", "inbox (tail of the large drain)", "deployments"]
    assert "| keys | 500 / 20 |" in out.with_suffix(".md").read_text()
