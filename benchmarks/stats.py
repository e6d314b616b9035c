"""Latency percentiles of one run and duro/Restate ratios computed pair by pair over repetitions.

Percentiles use the nearest-rank method on the sorted samples. A run's summary
keeps the percentile curve (1..99, 99.5, 99.9, 99.99) so plots can be drawn from the JSON
alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

CURVE_PERCENTILES = (*tuple(float(p) for p in range(1, 100)), 99.5, 99.9, 99.99)


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(percent / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(latencies_s)
    if not ordered:
        return {"count": 0}
    in_ms = [value * 1000 for value in ordered]
    return {
        "count": len(in_ms),
        "mean": statistics.fmean(in_ms),
        "min": in_ms[0],
        "p50": percentile(in_ms, 50),
        "p90": percentile(in_ms, 90),
        "p99": percentile(in_ms, 99),
        "p99_9": percentile(in_ms, 99.9),
        "max": in_ms[-1],
        "curve": [[p, percentile(in_ms, p)] for p in CURVE_PERCENTILES],
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of finite values (NaN fields when none)."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "n": len(finite)}


def ratio(numerator: float | None, denominator: float | None) -> float:
    if numerator is None or denominator is None or not denominator or not math.isfinite(numerator) or not math.isfinite(denominator):
        return math.nan
    return numerator / denominator


RATIO_METRICS = (
    "throughput_per_s", "p50_ms", "p90_ms", "p99_ms", "runtime_cpu_ms_per_request", "runtime_peak_rss_mib", "runtime_rss_mib",
    "sends_run_per_s", "runtime_cpu_ms_per_send_run",
)  # fmt: skip


def pairwise_ratios(runs: Sequence[dict[str, Any]], numerator: str, denominator: str) -> dict[str, dict[str, Any]]:
    """Per scenario and metric: numerator/denominator runtime ratios of each repetition, and their spread."""
    by_key = {(run["scenario"], run["repetition"], run["runtime"]): run for run in runs if not run.get("error")}
    scenarios = sorted({run["scenario"] for run in runs}, key=lambda name: [run["scenario"] for run in runs].index(name))
    comparisons: dict[str, dict[str, Any]] = {}
    for scenario in scenarios:
        repetitions = sorted({rep for (name, rep, _) in by_key if name == scenario})
        pairs = [(by_key.get((scenario, rep, numerator)), by_key.get((scenario, rep, denominator))) for rep in repetitions]
        complete = [(top, bottom) for top, bottom in pairs if top is not None and bottom is not None]
        if not complete:
            continue
        metrics = {}
        for metric in RATIO_METRICS:
            values = [ratio(top["metrics"].get(metric), bottom["metrics"].get(metric)) for top, bottom in complete]
            metrics[metric] = {"per_repetition": values, **spread(values)}
        comparisons[scenario] = {"pairs": len(complete), "metrics": metrics}
    return comparisons
