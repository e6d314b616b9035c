"""The `python -m benchmarks` command line: `run` (side by side), `smoke` (a quick check of the harness), `report` (re-render a results dir).

`run` writes into `--out-dir`: results.json, report.md, one PNG per scenario
and steps.png (plots need the `bench` extra), and per-run logs under runs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.endpoint import SDK_NAMES
from benchmarks.loadgen import LoadLimits
from benchmarks.machine import describe_machine
from benchmarks.plots import matplotlib_missing, write_plots
from benchmarks.process_stats import check_available
from benchmarks.report import render_markdown, with_comparisons, write_json
from benchmarks.runner import BenchConfig, log_line, run_plan
from benchmarks.runtimes import RUNTIME_FACTORIES, RuntimeOptions, is_runtime_name
from benchmarks.scenarios import BASE_SCENARIOS, DEFAULT_STEPS, parse_scenarios

SMOKE_SCENARIOS = "greet,counter-1000-keys,counter-hot-key,workflow-3-steps,steps-3,send,memory"
SMOKE_MEMORY_INVOCATIONS = 200


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _runtime_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if not is_runtime_name(name)]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown runtime(s) {unknown or text!r}; expected a comma-separated list of {', '.join(RUNTIME_FACTORIES)} or duro-wN"
            " (duro with --workers N)"
        )
    return names


def _env_pair(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _default_out_dir() -> Path:
    return Path("bench-results") / time.strftime("%Y%m%d-%H%M%S")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--runtimes",
        type=_runtime_list,
        default=("duro", "restate"),
        help="comma-separated, run in this order within each repetition (default duro,restate; also duro-kafka, and duro-wN: duro with"
        " --workers N)",
    )
    add(
        "--reference",
        default="restate",
        help="the runtime every other one is divided by, pair by pair (default restate; e.g. duro-w1 against duro-w2)",
    )
    add("--scenarios", default="all", help=f"comma-separated from {', '.join(BASE_SCENARIOS)}, steps-N, or all (default)")
    add("--steps", type=_int_list, default=DEFAULT_STEPS, help="N values that 'steps' expands to (default 1,10,50,100)")
    add("--repetitions", type=int, default=3, help="repetitions per scenario and runtime (default 3)")
    add("--duration-s", type=float, default=30.0, help="measured window per run (default 30)")
    add("--warmup-s", type=float, default=5.0, help="warm-up before the window, not measured (default 5)")
    add("--max-requests", type=int, default=1_000_000, help="end the window after this many measured requests (default 1000000)")
    add("--concurrency", type=int, default=32, help="concurrent requests of the load generator (default 32)")
    add("--request-timeout-s", type=float, default=30.0, help="per-request timeout (default 30)")
    add("--max-errors", type=int, default=100, help="abort a run after this many failed requests (default 100)")
    add(
        "--sdk",
        choices=sorted(SDK_NAMES),
        default="official",
        help="SDK implementing the services (default official: the Python restate-sdk; typescript: the official TypeScript SDK on Node,"
        " a cheap endpoint; duro: duro's SDK)",
    )
    add("--http1", action="store_true", help="register the endpoint with use_http_11 (request/response) instead of HTTP/2 bidi")
    add(
        "--restart",
        choices=("run", "repetition"),
        default="run",
        help="fresh runtime per run (default) or per repetition (all scenarios on fresh keys)",
    )
    add("--partitions", type=int, default=24, help="duro's partition count (default 24, Restate's default)")
    add("--memory-invocations", type=int, default=100_000, help="completed calls before the memory scenario reads RSS (default 100000)")
    add("--memory-concurrency", type=int, default=200, help="concurrency of the memory scenario (default 200)")
    add("--memory-timeout-s", type=float, default=1800.0, help="bound on the memory scenario's duration (default 1800)")
    add(
        "--send-drain-timeout-s", type=float, default=120.0, help="how long the send scenario waits for accepted sends to run (default 120)"
    )
    add(
        "--restate-port-wait-s",
        type=float,
        default=300.0,
        help="wait this long for ports 8080/9070/5122 to be free before starting Restate (default 300)",
    )
    add("--duro-arg", action="append", default=[], help="extra argument for `duro serve` (repeatable), e.g. for duro-kafka")
    add("--duro-env", action="append", type=_env_pair, default=[], help="KEY=VALUE environment for `duro serve` (repeatable)")
    add("--out-dir", type=Path, default=None, help="output directory (default bench-results/TIMESTAMP)")
    add("--keep-data", action="store_true", help="keep the runtimes' data directories")
    add("--no-plots", action="store_true", help="skip the PNG plots")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Benchmark duro side by side with the real Restate server.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_arguments(commands.add_parser("run", help="run scenarios on each runtime, interleaved repetitions, and write the reports"))
    smoke = commands.add_parser("smoke", help="tiny run on duro only that fails if the harness is broken (well under a minute)")
    smoke.add_argument("--out-dir", type=Path, default=None)
    smoke.add_argument("--sdk", choices=sorted(SDK_NAMES), default="official")
    report = commands.add_parser("report", help="re-render report.md and plots from a results directory")
    report.add_argument("out_dir", type=Path)
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    limits = LoadLimits(args.concurrency, args.warmup_s, args.duration_s, args.max_requests, args.request_timeout_s, args.max_errors)
    options = RuntimeOptions(args.partitions, tuple(args.duro_arg), dict(args.duro_env), args.restate_port_wait_s)
    return BenchConfig(
        runtimes=args.runtimes,
        reference=args.reference,
        scenarios=tuple(parse_scenarios(args.scenarios, args.steps)),
        out_dir=args.out_dir or _default_out_dir(),
        repetitions=args.repetitions,
        limits=limits,
        sdk=args.sdk,
        use_http_11=args.http1,
        restart=args.restart,
        memory_invocations=args.memory_invocations,
        memory_concurrency=args.memory_concurrency,
        memory_timeout_s=args.memory_timeout_s,
        send_drain_timeout_s=args.send_drain_timeout_s,
        keep_data=args.keep_data,
        runtime_options=options,
    )


def smoke_config(out_dir: Path | None, sdk: str) -> BenchConfig:
    limits = LoadLimits(concurrency=4, warmup_s=0.3, duration_s=1.0, max_requests=100_000, request_timeout_s=15.0, max_errors=5)
    return BenchConfig(
        runtimes=("duro",),
        scenarios=tuple(parse_scenarios(SMOKE_SCENARIOS)),
        out_dir=out_dir or _default_out_dir(),
        repetitions=1,
        limits=limits,
        sdk=sdk,
        restart="repetition",
        memory_invocations=SMOKE_MEMORY_INVOCATIONS,
        memory_concurrency=16,
        memory_timeout_s=30.0,
        send_drain_timeout_s=30.0,
        runtime_options=RuntimeOptions(partitions=4),
    )


def _config_summary(config: BenchConfig) -> dict[str, Any]:
    summary = dataclasses.asdict(config)
    summary["scenarios"] = [scenario.name for scenario in config.scenarios]
    summary["out_dir"] = str(config.out_dir)
    return summary


def execute(config: BenchConfig, plots: bool = True) -> dict[str, Any]:
    """Runs the plan, keeping results.json current after every run; writes report.md and plots at the end."""
    check_available()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"machine": describe_machine(config.out_dir), "config": _config_summary(config), "runtimes": {}, "runs": []}
    results_path = config.out_dir / "results.json"

    def on_run(record: dict[str, Any]) -> None:
        description = record.pop("runtime_description", None)
        if description:
            document["runtimes"][record["runtime"]] = description
        document["runs"].append(record)
        write_json(results_path, with_comparisons(document))

    try:
        run_plan(config, on_run)
    finally:
        document["machine"]["loadavg_at_end"] = list(os.getloadavg())
        write_json(results_path, with_comparisons(document))
        render_outputs(document, config.out_dir, plots)
    return document


def render_outputs(document: dict[str, Any], out_dir: Path, plots: bool) -> None:
    (out_dir / "report.md").write_text(render_markdown(document))
    if not plots:
        return
    missing = matplotlib_missing()
    if missing:
        log_line(missing)
        return
    for path in write_plots(document, out_dir):
        log_line(f"wrote {path}")


def smoke_failures(document: dict[str, Any], config: BenchConfig) -> list[str]:
    """What the smoke run expects: every scenario ran without error and produced numbers."""
    runs = document["runs"]
    problems = [f"{run['scenario']}: {run['error']}" for run in runs if run.get("error")]
    seen = {run["scenario"] for run in runs}
    problems += [f"{scenario.name}: no result" for scenario in config.scenarios if scenario.name not in seen]
    for run in runs:
        metrics = run["metrics"]
        if run["scenario"] == "send" and not metrics.get("send_drained"):
            problems.append(f"send: accepted {metrics.get('sends_accepted')} sends, {metrics.get('sends_completed')} ran")
        if not run.get("error") and not (metrics.get("runtime_peak_rss_mib") or 0) > 0:
            problems.append(f"{run['scenario']}: no RSS read for the runtime")
        if run["scenario"] != "memory" and not run.get("error") and metrics.get("runtime_cpu_s") is None:
            problems.append(f"{run['scenario']}: no CPU time read for the runtime")
    for name in ("results.json", "report.md"):
        if not (config.out_dir / name).exists():
            problems.append(f"{name} was not written")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        document = json.loads((args.out_dir / "results.json").read_text())
        render_outputs(with_comparisons(document), args.out_dir, plots=True)
        print(args.out_dir / "report.md")
        return 0
    if args.command == "smoke":
        config = smoke_config(args.out_dir, args.sdk)
        document = execute(config, plots=matplotlib_missing() is None)
        problems = smoke_failures(document, config)
        for problem in problems:
            print(f"smoke: {problem}", file=sys.stderr)
        print(f"smoke {'FAILED' if problems else 'ok'}: {config.out_dir / 'report.md'}")
        return 1 if problems else 0
    config = config_from_args(args)
    document = execute(config, plots=not args.no_plots)
    print(config.out_dir / "report.md")
    return 1 if any(run.get("error") for run in document["runs"]) else 0
