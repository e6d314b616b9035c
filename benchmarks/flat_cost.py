"""Cost that stays flat as the work grows: a node's CPU and throughput per invocation, each large case as a ratio to its small case.

    python -m benchmarks.flat_cost --out docs/benchmarks/flat-cost.json            # all three: 10 to 20 minutes on a busy 2-vCPU box
    python -m benchmarks.flat_cost --cases keys --keys 1000,1000000 --rounds 2    # one case, two rounds

Three cases, each measured on fresh `duro serve` nodes (embedded log, 24
partitions, one worker process: `--workers 1`, as the preloaded data dir of
`keys` is a one-worker node's) with the official TypeScript SDK as the
endpoint (`--sdk`):

- `keys`: `Counter.add` over keys that hold state, with `--keys` SMALL,LARGE
  keys preloaded (default 1,000 and 1,000,000). The preload writes each key's
  `count` state row into the node's RocksDB before the node starts, with the
  row key a `SetState` command writes (`partition_worker.keys.state_key`) in the
  partition the key routes to, then compacts the database so that no flush or
  compaction debt is charged to the measured requests (1 M keys: 15 to 20 s here,
  against 15 minutes to hours for 1 M calls through the ingress on two cores).
  The measured requests pick keys uniformly among the preloaded ones, so with
  1 M keys nearly every call reads a row that is not in any cache. Before
  measuring, one key's value is read through `Counter.get` to check the
  preload is what the handler sees.
- `inbox`: one key drains a queue of one-way `Counter.add` sends. With the
  endpoint stopped, `--inbox` SMALL,LARGE sends (default 300 and 10,000) are
  accepted for one key: the first takes the key's lock and retries (the
  node's retry interval is capped at 200 ms for this case), the others wait in
  the key's inbox. Then the endpoint starts and the key drains; the harness
  polls `Counter.get` (a shared handler, not queued behind the adds) every
  0.2 s and reads the node's CPU at each poll. Measured: the node's CPU and the
  completions per second from the first poll that sees a completion over the
  next `--inbox-window` completions (default 1,000; at most 80 % of the queue,
  so the window ends before the drain does). Each completion hands the lock
  over to the next queued invocation, so this is the cost per completion at
  that queue length (about 10,000 deep against at most 300 deep). The large
  drain also reports its tail, the window of completions before its last
  fifth of a window: there the queue is short again but the key's drained
  inbox rows (deletes) lie before its head.
- `deployments`: `--deployment-scenario` (default `greet`) with 1 and with 100
  deployments registered (`--deployments`). The deployments are one endpoint
  under 100 URIs (`http://127.0.0.1:PORT/d1` ...; the TypeScript SDK serves
  any path prefix), each registration a new deployment exposing the same
  services, so every service has 100 revisions and the last one is in use.

Each round runs the small case, then the large one; `--rounds` repeats that
and the ratio is taken round by round (median reported). Printed as JSON lines
and, with `--out`, written as JSON with a Markdown table beside it. A
benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict

from benchmarks.endpoint import SDK_NAMES, EndpointProcess
from benchmarks.loadgen import JSON_HEADERS, Request, RequestFactory, run_count
from benchmarks.process_stats import CpuWindow, ProcessTree
from benchmarks.report import markdown_table
from benchmarks.restart_history import prepare_data_dir
from benchmarks.runtimes import DuroRuntime, http_json, register, wait_for
from benchmarks.scenarios import parse_scenarios
from partition_worker import keys
from partition_worker.store import RocksDatabase
from protocol.routing import partition_key_for_key
from wal.partitioner import partition_of

CASES = ("keys", "inbox", "deployments")
PRELOAD_BATCH_ROWS = 20_000
COUNTER_STATE = b"count"
FIRST_COMPLETION_POLL_S = 0.05  # before the window: finds the drain's start closely
INBOX_POLL_INTERVAL_S = 0.2  # in the window each poll is a call through the node: rarely, so that it costs little of a drain
IDLE_WINDOW_S = 3.0
ONE_WORKER = ("--workers", "1")  # the preloaded data dir is a one-worker node's; the other cases match it
INBOX_RETRY_ENV = {"DURO_RETRY__MAX_INTERVAL_MS": "200", "DURO_RETRY__MAX_ATTEMPTS": "100000"}


def _pair(text: str) -> tuple[int, int]:
    small, _, large = text.partition(",")
    try:
        values = int(small), int(large)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SMALL,LARGE (two integers), got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


@contextmanager
def _node(run_dir: Path, args: argparse.Namespace, env: dict[str, str] | None = None) -> Iterator[tuple[DuroRuntime, EndpointProcess]]:
    """A started `duro serve` on `run_dir/data` (kept if already built) and a started endpoint; both stopped on exit."""
    runtime = DuroRuntime(run_dir, args.partitions, extra_args=ONE_WORKER, env=env or {}, start_timeout_s=300)
    endpoint = EndpointProcess(args.sdk, run_dir / "endpoint.log")
    try:
        runtime.start()
        endpoint.start()
        yield runtime, endpoint
    finally:
        endpoint.stop()
        runtime.stop()


def _measure_requests(runtime: DuroRuntime, factory: RequestFactory, warmup: RequestFactory, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then `args.requests` requests at `args.concurrency`: the node's CPU per request and the throughput."""
    asyncio.run(run_count(runtime.ingress_url, warmup, args.warmup_requests, args.concurrency, 600))
    cpu = CpuWindow(ProcessTree(runtime.root_pid()))
    load_before = os.getloadavg()
    cpu.begin()
    started = time.perf_counter()
    result = asyncio.run(run_count(runtime.ingress_url, factory, args.requests, args.concurrency, 1800))
    elapsed = time.perf_counter() - started
    cpu.end()
    if result.requests_ok < args.requests:
        raise RuntimeError(f"only {result.requests_ok} of {args.requests} requests succeeded: {dict(result.errors)}")
    return _figures(result.requests_ok, elapsed, cpu.cpu_s or 0.0, load_before)


def idle_cpu_ms_per_s(runtime: DuroRuntime, seconds: float = IDLE_WINDOW_S) -> float:
    """The node's CPU while nothing is asked of it (timers, housekeeping): at a slow drain it is a share of each completion."""
    cpu = CpuWindow(ProcessTree(runtime.root_pid()))
    cpu.begin()
    time.sleep(seconds)
    cpu.end()
    return round((cpu.cpu_s or 0.0) * 1000 / seconds, 2)


def _figures(done: int, elapsed_s: float, cpu_s: float, load_before: tuple[float, ...]) -> dict[str, Any]:
    return {
        "invocations": done,
        "elapsed_s": round(elapsed_s, 2),
        "runtime_cpu_ms_per_invocation": round(cpu_s * 1000 / done, 4),
        "throughput_per_s": round(done / elapsed_s, 1),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }


def _counter_factory(key_count: int, seed: str) -> RequestFactory:
    chooser = random.Random(seed)
    return lambda sequence: Request(f"/Counter/k{chooser.randrange(key_count)}/add", b"1", JSON_HEADERS)


def preload_keys(data_dir: Path, partitions: int, key_count: int) -> None:
    """Keys `k0`..`k{key_count-1}` of `Counter`, each holding state `count` = 1, written as a node's store holds them."""
    prepare_data_dir(data_dir, partitions)
    database = RocksDatabase(str(data_dir / "state"))
    try:
        pending: dict[int, dict[bytes, bytes | None]] = {}
        for index in range(key_count):
            key = f"k{index}"
            partition = partition_of(partition_key_for_key(key), partitions)
            pending.setdefault(partition, {})[keys.state_key("Counter", key, COUNTER_STATE)] = b"1"
            if index % PRELOAD_BATCH_ROWS == PRELOAD_BATCH_ROWS - 1:
                for number, puts in pending.items():
                    database.partition(number).write(puts)
                pending.clear()
        for number, puts in pending.items():
            database.partition(number).write(puts)
    finally:
        database.close()
    compacted = Rdict(str(data_dir / "state"), Options(raw_mode=True))
    try:
        compacted.flush()
        compacted.compact_range(None, None)
    finally:
        compacted.close()


def measure_keys(run_dir: Path, key_count: int, args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    preload_keys(run_dir / "data", args.partitions, key_count)
    preload_s = time.monotonic() - started
    with _node(run_dir, args) as (runtime, endpoint):
        register(runtime, endpoint.uri, False)
        probe = f"k{key_count - 1}"
        wait_for(lambda: http_json("POST", f"{runtime.ingress_url}/Counter/{probe}/get")[1] == 1, 60, f"Counter/{probe}/get to read 1")
        idle = idle_cpu_ms_per_s(runtime)
        tag = uuid.uuid4().hex
        figures = _measure_requests(runtime, _counter_factory(key_count, tag), _counter_factory(key_count, tag + "w"), args)
    return {"case": "keys", "size": key_count, "preload_s": round(preload_s, 1), "idle_cpu_ms_per_s": idle, **figures}


async def _poll_count(url: str) -> int:
    status, value = await asyncio.to_thread(http_json, "POST", url)
    if status != 200 or not isinstance(value, int):
        raise RuntimeError(f"{url} answered {status}: {value!r}")
    return value


def measure_inbox(run_dir: Path, queued: int, args: argparse.Namespace) -> dict[str, Any]:
    with _node(run_dir, args, INBOX_RETRY_ENV) as (runtime, endpoint):
        register(runtime, endpoint.uri, False)
        wait_for(lambda: http_json("POST", f"{runtime.ingress_url}/Greeter/greet", "x")[0] == 200, 60, "Greeter/greet to route")
        idle = idle_cpu_ms_per_s(runtime)
        endpoint.stop()
        path = f"/Counter/inbox-{uuid.uuid4().hex[:8]}"
        send = Request(f"{path}/add/send", b"1", JSON_HEADERS, expected_status=202)
        accepted = asyncio.run(run_count(runtime.ingress_url, lambda sequence: send, queued, args.concurrency, 1800)).requests_ok
        if accepted < queued:
            raise RuntimeError(f"only {accepted} of {queued} sends were accepted")
        endpoint.start()
        load_before = os.getloadavg()
        samples = asyncio.run(_drain_samples(runtime, f"{runtime.ingress_url}{path}/get", queued, args.drain_timeout_s))
    figures = drain_figures(samples, queued, args.inbox_window)
    load = {"loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()]}
    return {"case": "inbox", "size": queued, "idle_cpu_ms_per_s": idle, **figures, **load}


@dataclass(frozen=True)
class DrainSample:
    """One poll while a key drains: seconds since the first completion was seen, completions so far, the node's CPU seconds."""

    elapsed_s: float
    completed: int
    cpu_s: float


async def _drain_samples(runtime: DuroRuntime, get_url: str, queued: int, timeout_s: float) -> list[DrainSample]:
    """Polls from the first completion seen until all `queued` ran (raises if the first poll already saw them all)."""
    tree = ProcessTree(runtime.root_pid())
    deadline = time.monotonic() + timeout_s
    completed = 0
    while completed == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no queued send ran within {timeout_s} s")
        await asyncio.sleep(FIRST_COMPLETION_POLL_S)
        completed = await _poll_count(get_url)
    if completed >= queued:
        raise RuntimeError(f"the key drained all {queued} sends before the first poll saw it start: queue more (--inbox)")
    started = time.perf_counter()
    samples = [DrainSample(0.0, completed, tree.cpu_s())]
    while completed < queued:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the key drained only {completed} of {queued} within {timeout_s} s")
        await asyncio.sleep(INBOX_POLL_INTERVAL_S)
        completed = await _poll_count(get_url)
        samples.append(DrainSample(time.perf_counter() - started, completed, tree.cpu_s()))
    return samples


def drain_window(samples: list[DrainSample], from_completed: int, to_completed: int) -> dict[str, Any]:
    """The figures between the last sample at or before `from_completed` and the first at or past `to_completed`.

    Samples are polls of a growing count that ends at the drain's end; a window is measured from the poll before it
    begins, so that a drain faster than the poll interval (several windows between two polls) still has an end.
    """
    begin = samples[0]
    for sample in samples:
        if sample.completed > from_completed:
            break
        begin = sample
    end = next(sample for sample in samples if sample.completed >= max(to_completed, begin.completed + 1))
    done, elapsed_s = end.completed - begin.completed, end.elapsed_s - begin.elapsed_s
    return {
        "from_completed": begin.completed,
        "invocations": done,
        "elapsed_s": round(elapsed_s, 2),
        "runtime_cpu_ms_per_invocation": round((end.cpu_s - begin.cpu_s) * 1000 / done, 4),
        "throughput_per_s": round(done / elapsed_s, 1),
    }


def drain_figures(samples: list[DrainSample], queued: int, window: int) -> dict[str, Any]:
    """The head window (`window` completions from the first seen, at most 80 % of what was left) and the tail window
    (the `window` before the last fifth of it), both ending before the drain does: the last poll can come up to one
    poll interval after the last completion."""
    first = samples[0].completed
    head = min(window, int((queued - first) * 0.8))
    figures = {"queue_at_start": queued - first, **drain_window(samples, first, first + head)}
    if queued - first >= 2 * window:
        figures["tail"] = drain_window(samples, queued - window, queued - window // 5)
    return figures


def measure_deployments(run_dir: Path, deployments: int, args: argparse.Namespace) -> dict[str, Any]:
    scenario = parse_scenarios(args.deployment_scenario)[0]
    with _node(run_dir, args) as (runtime, endpoint):
        for number in range(1, deployments + 1):
            register(runtime, f"{endpoint.uri}/d{number}", False)
        wait_for(lambda: http_json("POST", f"{runtime.ingress_url}/Greeter/greet", "x")[0] == 200, 60, "Greeter/greet to route")
        status, listed = http_json("GET", f"{runtime.admin_url}/deployments")
        registered = len(listed.get("deployments", [])) if status == 200 and isinstance(listed, dict) else None
        idle = idle_cpu_ms_per_s(runtime)
        tag = uuid.uuid4().hex[:8]
        figures = _measure_requests(runtime, scenario.factory(f"m{tag}"), scenario.factory(f"w{tag}"), args)
    return {
        "case": "deployments",
        "size": deployments,
        "registered": registered,
        "scenario": scenario.name,
        "idle_cpu_ms_per_s": idle,
        **figures,
    }


MEASURES: dict[str, tuple[Callable[[Path, int, argparse.Namespace], dict[str, Any]], str]] = {
    "keys": (measure_keys, "keys"),
    "inbox": (measure_inbox, "inbox"),
    "deployments": (measure_deployments, "deployments"),
}


def _ratio_row(case: str, sizes: tuple[int, int], pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    cpu = [large["runtime_cpu_ms_per_invocation"] / small["runtime_cpu_ms_per_invocation"] for small, large in pairs]
    rate = [large["throughput_per_s"] / small["throughput_per_s"] for small, large in pairs]
    return {
        "case": case,
        "small": sizes[0],
        "large": sizes[1],
        "cpu_ratio": [round(value, 2) for value in cpu],
        "throughput_ratio": [round(value, 2) for value in rate],
        "cpu_ratio_median": round(statistics.median(cpu), 2),
        "throughput_ratio_median": round(statistics.median(rate), 2),
    }


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case: large/small of CPU per invocation and of throughput, round by round, and their medians.

    The inbox case adds a row for the tail of the large drain (its last completions) against the small drain.
    """
    summary = []
    for case in CASES:
        rounds: dict[int, dict[int, dict[str, Any]]] = {}
        for result in results:
            if result["case"] == case:
                rounds.setdefault(result["round"], {})[result["size"]] = result
        pairs = [(by_size[min(by_size)], by_size[max(by_size)]) for by_size in rounds.values() if len(by_size) == 2]
        if not pairs:
            continue
        sizes = (pairs[0][0]["size"], pairs[0][1]["size"])
        summary.append(_ratio_row(case, sizes, pairs))
        tails = [(small, large["tail"]) for small, large in pairs if "tail" in large]
        if tails:
            summary.append(_ratio_row(f"{case} (tail of the large drain)", sizes, tails))
    return summary


def markdown(results: list[dict[str, Any]], summary: list[dict[str, Any]]) -> str:
    runs = []
    for r in results:
        for name, w in [("measured", r), *([("tail", r["tail"])] if "tail" in r else [])]:
            idle_ms = r["idle_cpu_ms_per_s"] * w["elapsed_s"] / w["invocations"]
            runs.append(
                [r["case"], f"{r['size']:,}", str(r["round"]), name, f"{w['runtime_cpu_ms_per_invocation']:.3f}", f"{idle_ms:.3f}",
                 f"{w['throughput_per_s']:,.1f}", f"{r['loadavg_before'][0]:.1f}"]
            )  # fmt: skip
    ratio_rows = [
        [s["case"], f"{s['large']:,} / {s['small']:,}", f"{s['cpu_ratio_median']:.2f} ({', '.join(map(str, s['cpu_ratio']))})",
         f"{s['throughput_ratio_median']:.2f} ({', '.join(map(str, s['throughput_ratio']))})"]
        for s in summary
    ]  # fmt: skip
    header = ["case", "size", "round", "window", "runtime CPU ms per invocation", "of which idle", "invocations/s", "load average before"]
    ratio_header = ["case", "large/small", "CPU per invocation ratio (per round)", "throughput ratio (per round)"]
    return "\n".join([*markdown_table(header, runs), *markdown_table(ratio_header, ratio_rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flat_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated from {', '.join(CASES)} (default all)")
    parser.add_argument("--keys", type=_pair, default=(1_000, 1_000_000), help="SMALL,LARGE keys holding state (default 1000,1000000)")
    parser.add_argument("--inbox", type=_pair, default=(300, 10_000), help="SMALL,LARGE sends queued on one key (default 300,10000)")
    parser.add_argument("--inbox-window", type=int, default=1_000, help="completions measured while the key drains (default 1000)")
    parser.add_argument("--deployments", type=_pair, default=(1, 100), help="SMALL,LARGE deployments registered (default 1,100)")
    parser.add_argument("--deployment-scenario", default="greet", help="scenario of the deployments case (default greet)")
    parser.add_argument("--sdk", choices=sorted(SDK_NAMES), default="typescript")
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per run of keys and deployments (default 3000)")
    parser.add_argument("--warmup-requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--partitions", type=int, default=24)
    parser.add_argument("--drain-timeout-s", type=float, default=600.0, help="bound on waiting for an inbox to drain (default 600)")
    parser.add_argument("--rounds", type=int, default=1, help="small then large, this many times; ratios round by round")
    parser.add_argument("--out", type=Path, help="write results here as JSON (and a .md table beside it)")
    args = parser.parse_args(argv)
    cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown or not cases:
        parser.error(f"unknown case(s) {unknown or args.cases!r}; expected names from {', '.join(CASES)}")
    results: list[dict[str, Any]] = []
    for round_number in range(1, args.rounds + 1):
        for case in cases:
            measure, sizes_arg = MEASURES[case]
            for size in getattr(args, sizes_arg):
                with tempfile.TemporaryDirectory(prefix=f"duro-flat-{case}-") as tmp:
                    result = {**measure(Path(tmp), size, args), "round": round_number}
                results.append(result)
                print(json.dumps(result), flush=True)
    summary = ratios(results)
    text = markdown(results, summary)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results, "ratios": summary}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
