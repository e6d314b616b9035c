"""PNG plots of a benchmark's results.json with matplotlib (the optional `bench` extra): latency distributions and time per step.

`latency-SCENARIO.png`: latency against percentile (on a 'number of nines'
axis, so the tail is readable) for every run, one colour per runtime, one line
per repetition. `steps.png`: p50 latency and p50 latency
per step against N for the steps-N scenarios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLOURS = {"duro": "tab:blue", "restate": "tab:orange", "duro-kafka": "tab:green"}
DPI = 110
TICK_PERCENTILES = (10.0, 50.0, 90.0, 99.0, 99.9)


def matplotlib_missing() -> str | None:
    """None if plots can be drawn, else why not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed: pip install -e '.[bench]' to get the plots"
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _colour(runtime: str) -> str:
    return COLOURS.get(runtime, "tab:gray")


def _ok(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [run for run in runs if not run.get("error") and run.get("latency_ms", {}).get("curve")]


def _nines(percent: float) -> float:
    """Position of a percentile on a 'number of nines' axis: 90 -> 1, 99 -> 2, 99.9 -> 3."""
    return -math.log10(1 - percent / 100)


def plot_latency(runs: Sequence[dict[str, Any]], scenario: str, path: Path) -> None:
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    labelled: set[str] = set()
    for run in (run for run in _ok(runs) if run["scenario"] == scenario):
        curve = run["latency_ms"]["curve"]
        runtime = run["runtime"]
        axes.plot(
            [_nines(point[0]) for point in curve],
            [point[1] for point in curve],
            color=_colour(runtime),
            alpha=0.8,
            label=None if runtime in labelled else runtime,
        )
        labelled.add(runtime)
    axes.set_xticks([_nines(p) for p in TICK_PERCENTILES], [f"p{p:g}" for p in TICK_PERCENTILES])
    axes.set_yscale("log")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_xlabel("percentile")
    axes.set_title(f"{scenario}: latency distribution (one line per repetition)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    pyplot.close(figure)


def plot_steps(runs: Sequence[dict[str, Any]], path: Path) -> bool:
    """Draws p50 and p50/N against N; returns False if there are no steps-N runs."""
    points: dict[str, list[tuple[int, float]]] = {}
    for run in _ok(runs):
        steps = run["metrics"].get("steps")
        if steps and run["metrics"].get("p50_ms") is not None:
            points.setdefault(run["runtime"], []).append((steps, run["metrics"]["p50_ms"]))
    if not points:
        return False
    pyplot = _pyplot()
    figure, (total_axes, per_step_axes) = pyplot.subplots(1, 2, figsize=(11, 4.5))
    for runtime, values in sorted(points.items()):
        values.sort()
        xs = [steps for steps, _ in values]
        total_axes.scatter(xs, [p50 for _, p50 in values], color=_colour(runtime), label=runtime)
        per_step_axes.scatter(xs, [p50 / steps for steps, p50 in values], color=_colour(runtime), label=runtime)
    total_axes.set(xlabel="N steps", ylabel="p50 latency (ms)", title="p50 latency of steps(N)")
    per_step_axes.set(xlabel="N steps", ylabel="p50 ms per step", title="time per step against N")
    for axes in (total_axes, per_step_axes):
        axes.set_xscale("log")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    pyplot.close(figure)
    return True


def write_plots(document: dict[str, Any], out_dir: Path) -> list[Path]:
    """All plots of `document` into `out_dir`; returns the files written."""
    runs = document.get("runs", [])
    written = []
    for scenario in dict.fromkeys(run["scenario"] for run in _ok(runs)):
        path = out_dir / f"latency-{scenario}.png"
        plot_latency(runs, scenario, path)
        written.append(path)
    steps_path = out_dir / "steps.png"
    if plot_steps(runs, steps_path):
        written.append(steps_path)
    return written
