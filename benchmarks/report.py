"""The benchmark's outputs: `results.json` (machine, config, runs, pairwise ratios) and `report.md` (tables).

`results.json` is rewritten after every run; `report.md` is rendered from it
alone, so `python -m benchmarks report DIR` can redo it later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.stats import pairwise_ratios, spread

REFERENCE_RUNTIME = "restate"


def write_json(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1, default=str, allow_nan=True))
    temporary.replace(path)


def reference_of(document: dict[str, Any]) -> str:
    """The runtime the ratios divide by: the run's `--reference`, Restate unless it said otherwise."""
    return str(document.get("config", {}).get("reference") or REFERENCE_RUNTIME)


def with_comparisons(document: dict[str, Any]) -> dict[str, Any]:
    """Adds `comparisons[runtime]`: that runtime over the reference (Restate), pair by pair, for every other runtime."""
    runs = document.get("runs", [])
    runtimes = sorted({run["runtime"] for run in runs})
    reference = reference_of(document)
    if reference in runtimes:
        document["comparisons"] = {name: pairwise_ratios(runs, name, reference) for name in runtimes if name != reference}
    return document


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:,.{digits}f}"


def _spread_text(values: Sequence[float | None], digits: int = 1) -> str:
    summary = spread([value for value in values if value is not None])
    if summary["n"] == 0:
        return "–"
    if summary["n"] == 1:
        return _number(summary["median"], digits)
    return f"{_number(summary['median'], digits)} [{_number(summary['min'], digits)}–{_number(summary['max'], digits)}]"


def _ok_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [run for run in runs if not run.get("error")]


def _groups(runs: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(scenario, runtime, runs) in first-seen order."""
    order: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        order.setdefault((run["scenario"], run["runtime"]), []).append(run)
    return [(scenario, runtime, group) for (scenario, runtime), group in order.items()]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return [*lines, ""]


def _metric(group: Sequence[dict[str, Any]], name: str) -> list[float | None]:
    return [run["metrics"].get(name) for run in group]


def _results_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[tuple[str, str, int]] = [
        ("throughput/s", "throughput_per_s", 1), ("p50 ms", "p50_ms", 1), ("p90 ms", "p90_ms", 1), ("p99 ms", "p99_ms", 1),
        ("runtime CPU ms/req", "runtime_cpu_ms_per_request", 2), ("service CPU ms/req", "service_cpu_ms_per_request", 2),
        ("loadgen CPU ms/req", "loadgen_cpu_ms_per_request", 2), ("runtime peak RSS MiB", "runtime_peak_rss_mib", 0),
    ]  # fmt: skip
    rows = []
    for scenario, runtime, group in _groups(_ok_runs(runs)):
        if scenario == "memory":
            continue
        cells = [_spread_text(_metric(group, key), digits) for _, key, digits in columns]
        errors = sum(run["metrics"].get("error_count", 0) for run in group)
        rows.append([scenario, runtime, str(len(group)), *cells, str(errors)])
    return markdown_table(["scenario", "runtime", "runs", *(title for title, _, _ in columns), "errors"], rows)


def _ratio_table(comparisons: dict[str, Any], runtime: str, reference: str) -> list[str]:
    columns = [
        ("throughput", "throughput_per_s"),
        ("p50", "p50_ms"),
        ("p90", "p90_ms"),
        ("p99", "p99_ms"),
        ("runtime CPU/req", "runtime_cpu_ms_per_request"),
        ("runtime peak RSS", "runtime_peak_rss_mib"),
        ("runtime RSS", "runtime_rss_mib"),
    ]
    rows = []
    for scenario, comparison in comparisons.items():
        metrics = comparison["metrics"]
        rows.append(
            [scenario, str(comparison["pairs"]), *(_spread_text(metrics.get(key, {}).get("per_repetition", []), 2) for _, key in columns)]
        )
    title = [f"### {runtime} / {reference}, pair by pair: median [min–max] over repetitions", "",
             f"Throughput above 1: {runtime} handles more per second. Latency, CPU and RSS above 1: {runtime} is slower or bigger.", ""]  # fmt: skip
    return title + markdown_table(["scenario", "pairs", *(name for name, _ in columns)], rows)


def _steps_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    step_groups = [(scenario, runtime, group) for scenario, runtime, group in _groups(_ok_runs(runs)) if group[0]["metrics"].get("steps")]
    for _scenario, runtime, group in sorted(step_groups, key=lambda item: (item[1], item[2][0]["metrics"]["steps"])):
        steps = group[0]["metrics"]["steps"]
        rows.append(
            [
                str(steps),
                runtime,
                _spread_text(_metric(group, "p50_ms")),
                _spread_text(_metric(group, "ms_per_step_p50"), 2),
                _spread_text(_metric(group, "steps_per_s"), 0),
            ]
        )
    if not rows:
        return []
    return markdown_table(["N steps", "runtime", "p50 ms", "p50 ms per step", "steps/s"], rows) + _step_fits(step_groups)


def _step_fits(step_groups: Sequence[tuple[str, str, list[dict[str, Any]]]]) -> list[str]:
    """Least-squares line p50 = fixed + per_step * N per runtime, over the median p50 of each N: the marginal cost of a step."""
    points: dict[str, list[tuple[float, float]]] = {}
    for _, runtime, group in step_groups:
        median_p50 = spread([value for value in _metric(group, "p50_ms") if value is not None])["median"]
        points.setdefault(runtime, []).append((float(group[0]["metrics"]["steps"]), median_p50))
    lines = []
    for runtime, values in points.items():
        fit = least_squares_line(values)
        if fit is not None:
            lines.append(f"- {runtime}: p50 ≈ {fit[0]:.1f} ms + {fit[1]:.2f} ms × N (least squares over {len(values)} values of N)")
    return [*lines, ""] if lines else []


def least_squares_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(intercept, slope) of the least-squares line through `points`, None with fewer than two distinct x."""
    finite = [(x, y) for x, y in points if math.isfinite(y)]
    if len({x for x, _ in finite}) < 2:
        return None
    mean_x = sum(x for x, _ in finite) / len(finite)
    mean_y = sum(y for _, y in finite) / len(finite)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in finite) / sum((x - mean_x) ** 2 for x, _ in finite)
    return mean_y - slope * mean_x, slope


def _send_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for scenario, runtime, group in _groups(_ok_runs(runs)):
        if scenario == "send":
            rows.append(
                [
                    runtime,
                    _spread_text(_metric(group, "throughput_per_s")),
                    _spread_text(_metric(group, "p99_ms")),
                    _spread_text(_metric(group, "send_drain_s"), 2),
                    _spread_text(_metric(group, "sends_run_per_s")),
                    _spread_text(_metric(group, "runtime_cpu_ms_per_send_run"), 2),
                    str(sum(1 for run in group if not run["metrics"].get("send_drained"))),
                ]
            )
    titles = ["runtime", "accepted sends/s", "p99 ack ms", "drain after window s", "sends run/s, start to drained",
              "runtime CPU ms per send run", "runs not drained"]  # fmt: skip
    return markdown_table(titles, rows) if rows else []


def _send_ratio_lines(document: dict[str, Any]) -> list[str]:
    """Each runtime over the reference for the sends counted from the first request until all had run."""
    lines = []
    for runtime, comparisons in document.get("comparisons", {}).items():
        metrics = comparisons.get("send", {}).get("metrics", {})
        run_rate = metrics.get("sends_run_per_s", {}).get("per_repetition", [])
        cpu = metrics.get("runtime_cpu_ms_per_send_run", {}).get("per_repetition", [])
        if run_rate:
            lines.append(
                f"- {runtime} / {reference_of(document)}, start to drained, pair by pair: sends run per second "
                f"{_spread_text(run_rate, 2)}, runtime CPU per send run {_spread_text(cpu, 2)}"
            )
    return [*lines, ""] if lines else []


def _memory_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for scenario, runtime, group in _groups(_ok_runs(runs)):
        if scenario == "memory":
            rows.append(
                [
                    runtime,
                    _spread_text(_metric(group, "invocations_completed"), 0),
                    _spread_text(_metric(group, "runtime_rss_before_mib"), 0),
                    _spread_text(_metric(group, "runtime_rss_mib"), 0),
                    _spread_text(_metric(group, "runtime_peak_rss_mib"), 0),
                    _spread_text(_metric(group, "throughput_per_s")),
                ]
            )
    return markdown_table(["runtime", "invocations", "RSS before MiB", "RSS after MiB", "peak RSS MiB", "calls/s"], rows) if rows else []


def _machine_lines(document: dict[str, Any]) -> list[str]:
    machine = document.get("machine", {})
    lines = [f"- {key}: {value}" for key, value in machine.items()]
    for description in document.get("runtimes", {}).values():
        lines.append(f"- {description.get('runtime')} {description.get('version')}: {description.get('durability')}")
    return [*lines, ""]


def _section(title: str, body: list[str], intro: str = "") -> list[str]:
    return [f"## {title}", "", *([intro, ""] if intro else []), *body] if body else []


def render_markdown(document: dict[str, Any]) -> str:
    runs = document.get("runs", [])
    config = document.get("config", {})
    lines = [
        "# duro benchmark",
        "",
        f"Config: `{json.dumps(config, default=str)}`",
        "",
        "## Machine and runtimes",
        "",
        *_machine_lines(document),
    ]
    lines += _section(
        "Results (median [min–max] over repetitions)",
        _results_table(runs),
        "CPU is per measured request; runtime CPU covers the runtime's whole process tree.",
    )
    for runtime, comparisons in document.get("comparisons", {}).items():
        lines += _ratio_table(comparisons, runtime, reference_of(document))
    lines += _section("Cost per step (steps-N)", _steps_table(runs))
    lines += _section(
        "One-way sends",
        [*send_rows, "", *_send_ratio_lines(document)] if (send_rows := _send_table(runs)) else [],
        "Accepted/s counts 202 answers; drain is the time after the window until every accepted send had run. A runtime "
        "may accept sends quickly and run them later, so the last columns count from the first request (warm-up "
        "included) until every accepted send had run: sends run per second, and the runtime's CPU over that time per send.",
    )
    lines += _section("Memory after N completed invocations", _memory_table(runs))
    failures = [f"- {run['scenario']} r{run['repetition']} {run['runtime']}: {run['error']}" for run in runs if run.get("error")]
    lines += _section("Failed runs", [*failures, ""] if failures else [])
    return "\n".join(lines)
