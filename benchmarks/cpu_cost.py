"""The runtime's CPU per request for a fixed number of requests, optionally under a profiler: the number the optimisations are judged by.

    python -m benchmarks.cpu_cost --scenario greet --requests 5000 --sdk typescript
    python -m benchmarks.cpu_cost --scenario greet --requests 5000 --py-spy /tmp/greet.txt   # py-spy raw stacks of the node
    python -m benchmarks.cpu_cost --scenario counter-1000-keys --duro-arg=--workers --duro-arg=2
    python -m benchmarks.cpu_cost --scenario greet --requests 1000 --callgrind /tmp/cg   # instructions per request (valgrind)
    python -m benchmarks.cpu_cost --scenario greet --duro-arg=--workers --duro-arg=2 --strace /tmp/greet.strace   # system calls per request

Starts `duro serve` (embedded log, or Kafka with `--kafka-bootstrap`; fresh data dir and topic) and the endpoint, warms up
with `--warmup-requests`, then completes `--requests` requests at
`--concurrency` and prints the runtime's CPU milliseconds per request (its
whole process tree, from /proc), the endpoint's, the throughput and the load
average. CPU per request depends far less on what else runs on the machine
than throughput does, so on a shared machine it is the figure to compare; run
a change and its baseline alternately (`--rounds`) and compare medians.
With `--callgrind DIR` the node runs under valgrind's callgrind, instrumented
only for the measured requests, and the figure is the node's instructions per
request: slow (about 50 times), but the same on a busy machine as on an idle
one; with several worker processes (`--workers`) every process of the node runs
under it and the figure is their sum (one dump per process). The dump in DIR
opens in kcachegrind or `callgrind_annotate`. With `--strace FILE`, `strace -c -f`
is attached to every process of the node for the measured requests (its summary
goes to FILE) and the result adds the calls per request of the system calls
that show hand-overs and syncs (`fdatasync`, `pwritev2`, `futex`, `write`, `read`,
`epoll_pwait`); strace slows the node, so its CPU figure is not comparable then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.endpoint import SDK_NAMES, EndpointProcess
from benchmarks.loadgen import run_count
from benchmarks.process_stats import CpuWindow, ProcessTree
from benchmarks.runtimes import DuroRuntime, http_json, register, wait_for
from benchmarks.scenarios import parse_scenarios


def measure(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """One fresh runtime and endpoint: warm up, then `args.requests` requests; the CPU each process tree spent on them."""
    scenario = parse_scenarios(args.scenario)[0]
    backend, log_args = ("kafka", ("--kafka-bootstrap", args.kafka_bootstrap)) if args.kafka_bootstrap else ("embedded", ())
    runtime = DuroRuntime(run_dir, args.partitions, backend, (*log_args, *args.duro_arg), dict(args.duro_env))
    if args.callgrind:
        args.callgrind.mkdir(parents=True, exist_ok=True)
        runtime.command_prefix = valgrind_prefix(args.callgrind)
        runtime.start_timeout_s = 600
    if args.cprofile:
        runtime.python_args = ("-m", "cProfile", "-o", str(args.cprofile))
    endpoint = EndpointProcess(args.sdk, run_dir / "endpoint.log")
    profiler: subprocess.Popen[bytes] | None = None
    try:
        runtime.start()
        endpoint.start()
        register(runtime, endpoint.uri, False)
        wait_for(lambda: http_json("POST", f"{runtime.ingress_url}/Greeter/greet", "x")[0] == 200, 60, "Greeter/greet to route")
        tag = uuid.uuid4().hex[:8]
        asyncio.run(run_count(runtime.ingress_url, scenario.factory(f"w{tag}"), args.warmup_requests, args.concurrency, 600))
        runtime_cpu = CpuWindow(ProcessTree(runtime.root_pid()))
        endpoint_cpu = CpuWindow(ProcessTree(endpoint.pid))
        if args.py_spy:
            profiler = _py_spy(runtime.root_pid(), args.py_spy)
        load_before = os.getloadavg()
        node_pids = ProcessTree(runtime.root_pid()).pids()  # the supervisor and each worker process
        if args.strace:
            profiler = _strace(node_pids, args.strace)
        if args.callgrind:
            for pid in node_pids:
                callgrind_control("--instr=on", pid)
        runtime_cpu.begin()
        endpoint_cpu.begin()
        started = time.perf_counter()
        result = asyncio.run(run_count(runtime.ingress_url, scenario.factory(f"m{tag}"), args.requests, args.concurrency, 1800))
        elapsed = time.perf_counter() - started
        runtime_cpu.end()
        endpoint_cpu.end()
        if profiler is not None and args.strace:
            profiler.send_signal(2)
            profiler.wait(timeout=60)
            profiler = None
        instructions = sum(dump_instructions(args.callgrind, pid) for pid in node_pids) if args.callgrind else None
        done = result.requests_ok
        if done < args.requests:
            raise RuntimeError(f"only {done} of {args.requests} requests succeeded: {dict(result.errors)}")
        return {
            "scenario": scenario.name,
            "requests": done,
            "runtime_cpu_ms_per_request": (runtime_cpu.cpu_s or 0) * 1000 / done,
            "endpoint_cpu_ms_per_request": (endpoint_cpu.cpu_s or 0) * 1000 / done,
            "throughput_per_s": done / elapsed,
            **({"runtime_instructions_per_request": round(instructions / done)} if instructions is not None else {}),
            **({"syscalls_per_request": strace_calls_per_request(args.strace, done)} if args.strace else {}),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        }
    finally:
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(timeout=60)
        endpoint.stop()
        runtime.stop()


def valgrind_prefix(out_dir: Path) -> list[str]:
    exe = shutil.which("valgrind")
    if exe is None:
        raise FileNotFoundError("valgrind is not on PATH (apt-get install valgrind)")
    return [exe, "--tool=callgrind", "--trace-children=yes", "--instr-atstart=no", f"--callgrind-out-file={out_dir}/callgrind.out.%p"]


def callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120)


def dump_instructions(out_dir: Path, pid: int) -> int:
    """Dump the counters of process `pid` for the measured requests; their instruction count (the dump's `totals:` line)."""
    before = set(out_dir.iterdir())
    callgrind_control("--dump=measured", pid)
    callgrind_control("--instr=off", pid)
    dumps = sorted(
        (path for path in set(out_dir.iterdir()) - before if path.name.startswith(f"callgrind.out.{pid}")),
        key=lambda path: path.stat().st_mtime,
    )
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump into {out_dir}")
    for line in dumps[-1].read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals line in {dumps[-1]}")


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` and its children (raw collapsed stacks, readable by speedscope and flamegraph.pl) until SIGINT."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise FileNotFoundError("py-spy is not on PATH (pip install py-spy)")
    return subprocess.Popen([exe, "record", "--subprocesses", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", str(out)])


_STRACE_SHOWN = ("fdatasync", "pwritev2", "futex", "write", "read", "epoll_pwait", "sendto", "recvfrom")


def _strace(pids: list[int], out: Path) -> subprocess.Popen[bytes]:
    """`strace -c -f` attached to `pids` (and the threads they start) until SIGINT; its summary table into `out`."""
    exe = shutil.which("strace")
    if exe is None:
        raise FileNotFoundError("strace is not on PATH (apt-get install strace)")
    attach = [arg for pid in pids for arg in ("-p", str(pid))]
    process = subprocess.Popen([exe, "-c", "-f", "-o", str(out), *attach], stderr=subprocess.DEVNULL)
    time.sleep(1)  # attaching to every thread takes a moment; the measured requests start after it
    return process


def strace_calls_per_request(summary: Path, requests: int) -> dict[str, float]:
    """Calls per request of the system calls in `_STRACE_SHOWN`, from an `strace -c` summary table."""
    calls: dict[str, float] = {}
    for line in summary.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in _STRACE_SHOWN and fields[3].isdigit():
            calls[fields[-1]] = round(int(fields[3]) / requests, 2)
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="greet", help="one scenario name (greet, counter-1000-keys, steps-10, ...)")
    parser.add_argument("--sdk", choices=sorted(SDK_NAMES), default="typescript")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup-requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--partitions", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=1, help="fresh runtimes measured one after another; prints each and the median")
    parser.add_argument("--kafka-bootstrap", help="run duro on Kafka (a fresh topic) at this broker instead of the embedded log")
    parser.add_argument("--duro-arg", action="append", default=[], help="extra argument for `duro serve` (repeatable)")
    parser.add_argument("--duro-env", action="append", type=lambda t: tuple(t.split("=", 1)), default=[], help="KEY=VALUE for duro")
    parser.add_argument("--callgrind", type=Path, help="run the node under callgrind; count its instructions per request (dump here)")
    parser.add_argument("--cprofile", type=Path, help="run the node under cProfile (whole run, start-up included); stats into this file")
    parser.add_argument("--strace", type=Path, help="count the node's system calls over the measured requests (strace -c -f summary here)")
    parser.add_argument("--py-spy", type=Path, help="record the runtime with py-spy into this file (raw collapsed stacks)")
    args = parser.parse_args(argv)
    results = []
    for round_index in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="duro-cpu-cost-") as tmp:
            result = measure(args, Path(tmp))
        results.append(result)
        print(json.dumps({"round": round_index + 1, **result}), flush=True)
    if args.rounds > 1:
        median = statistics.median(r["runtime_cpu_ms_per_request"] for r in results)
        print(json.dumps({"median_runtime_cpu_ms_per_request": round(median, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
