"""Kafka ingest side by side: duro and the real Restate server consume the same kind of topic into the same handler.

    python -m benchmarks.kafka_ingest                       # duro, restate, duro, restate (2 repetitions)
    python -m benchmarks.kafka_ingest --runtimes duro --events 500 --paced-rate 20 --paced-s 3   # a quick duro-only check

Each run starts a fresh runtime and a fresh endpoint (the official Python SDK
under hypercorn, `IngestSink/record` of `benchmarks/services.py`: reads and
writes its key's state), registers it, names the Kafka cluster through
`POST /kafka-clusters` (both runtimes offer it) and measures two things:

- **events per second to completion**: `--events` records over `--keys` keys
  are produced to a fresh topic of `--partitions` partitions *before* the
  subscription exists; then `POST /subscriptions` (`auto.offset.reset=earliest`)
  starts the clock, which stops when the handler has seen the last event. The
  runtime's CPU seconds in that window are read from /proc.
- **produce-to-handler latency**: with a subscription already consuming a
  second topic, events are produced at `--paced-rate` per second for
  `--paced-s` seconds; each carries its send time, and the handler notes when it
  ran. p50 and p99 over all of them.

The endpoint's CPU per backlog event is reported beside the runtime's. With
`--callgrind DIR` (duro only) the node runs under valgrind's callgrind, as
one process (`--workers 1`: valgrind does not follow the workers a supervisor
starts), instrumented while the backlog is consumed: instructions per event,
the same on a busy machine as on an idle one; the latency phase is skipped.

The broker is one Kafka 4.4.0 node started by `scripts/kafka` in the output
directory (or yours: `--bootstrap`); it shares the machine with the runtime,
the endpoint and this process. Restate runs only through
shared/tools/restate-server/restate-server.sh (ports 8080/9070/5122): hold
`flock /work/locks/restate.lock` around a run that includes it.
Output: `--out-dir` (default bench-results/kafka-TIMESTAMP) with results.json,
report.md and the logs of every process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.cpu_cost import callgrind_control, dump_instructions, valgrind_prefix
from benchmarks.endpoint import REPO_ROOT, EndpointProcess
from benchmarks.machine import describe_machine
from benchmarks.process_stats import CpuWindow, ProcessTree
from benchmarks.runner import log_line
from benchmarks.runtimes import DuroRuntime, Runtime, RuntimeOptions, create_runtime, http_json, register, wait_for
from benchmarks.services import INGEST_LOG_ENV
from benchmarks.stats import latency_summary_ms, ratio, spread

CLUSTER = "bench"
KAFKA_SCRIPT = REPO_ROOT / "scripts" / "kafka"


@dataclass(frozen=True)
class IngestConfig:
    runtimes: tuple[str, ...]
    repetitions: int
    events: int
    keys: int
    partitions: int
    paced_rate: int
    paced_s: float
    completion_timeout_s: float
    out_dir: Path
    callgrind: Path | None = None  # duro only: count the node's instructions per backlog event under callgrind


# ---------------------------------------------------------------- Kafka


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create())


def produce_backlog(bootstrap: str, topic: str, events: int, keys: int) -> None:
    """`events` records, key k{i % keys}, value {"seq": i, "t": send time in ns}, acks=all."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            for seq in range(events):
                value = json.dumps({"seq": seq, "t": time.time_ns()}).encode()
                await producer.send(topic, value, key=f"k{seq % keys}".encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def produce_paced(bootstrap: str, topic: str, first_seq: int, rate: int, duration_s: float, keys: int) -> int:
    """Produce `rate` events per second for `duration_s` (each stamped when it is sent); returns how many."""

    async def send() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        await producer.start()
        count = int(rate * duration_s)
        try:
            started = time.monotonic()
            for index in range(count):
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                seq = first_seq + index
                value = json.dumps({"seq": seq, "t": time.time_ns()}).encode()
                await producer.send(topic, value, key=f"k{seq % keys}".encode())
            await producer.flush()
        finally:
            await producer.stop()
        return count

    return asyncio.run(send())


class Broker:
    """A broker of our own through scripts/kafka (or none when the user gives `--bootstrap`)."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), "start", str(self.directory), str(self.port)], check=True, timeout=180)

    def stop(self) -> None:
        subprocess.run(["bash", str(KAFKA_SCRIPT), "stop", str(self.directory)], check=False, timeout=120)


# ---------------------------------------------------------------- handled events


def handled(log_path: Path) -> dict[int, tuple[int, int]]:
    """seq -> (produced ns, first handled ns) from the endpoint's notes."""
    seen: dict[int, tuple[int, int]] = {}
    if not log_path.exists():
        return seen
    for line in log_path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue  # a line being written
        seq, produced_ns, handled_ns = (int(part) for part in parts)
        if seq not in seen or handled_ns < seen[seq][1]:
            seen[seq] = (produced_ns, handled_ns)
    return seen


def wait_handled(log_path: Path, seqs: range, timeout_s: float) -> dict[int, tuple[int, int]]:
    notes: dict[int, tuple[int, int]] = {}

    def complete() -> bool:
        notes.update(handled(log_path))
        return all(seq in notes for seq in seqs)

    wait_for(complete, timeout_s, f"the handler to see events {seqs.start}..{seqs.stop - 1}", interval_s=0.2)
    return notes


# ---------------------------------------------------------------- one run


def subscribe(runtime: Runtime, topic: str) -> None:
    body = {"source": f"kafka://{CLUSTER}/{topic}", "sink": "service://IngestSink/record", "options": {"auto.offset.reset": "earliest"}}
    status, answer = http_json("POST", f"{runtime.admin_url}/subscriptions", body, timeout_s=60)
    if status != 201:
        raise RuntimeError(f"{runtime.name}: creating the subscription failed with HTTP {status}: {answer}")


def run_once(config: IngestConfig, runtime_name: str, repetition: int, bootstrap: str) -> dict[str, Any]:
    run_dir = config.out_dir / "runs" / f"{repetition}-{runtime_name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    notes = run_dir / "handled.log"
    endpoint = EndpointProcess("official", run_dir / "endpoint.log", env={INGEST_LOG_ENV: str(notes)})
    runtime = create_runtime(runtime_name, run_dir / "runtime", RuntimeOptions())
    if config.callgrind is not None:
        if not isinstance(runtime, DuroRuntime):
            raise ValueError(f"--callgrind counts duro's instructions; {runtime_name} cannot run under it")
        config.callgrind.mkdir(parents=True, exist_ok=True)
        runtime.command_prefix = valgrind_prefix(config.callgrind)
        runtime.extra_args = (*runtime.extra_args, "--workers", "1")  # valgrind follows no child: the node in one process
        runtime.start_timeout_s = 600
    record: dict[str, Any] = {"runtime": runtime_name, "repetition": repetition, "error": None, "load_average_before": os.getloadavg()}
    endpoint.start()
    try:
        runtime.start()
        record["runtime_info"] = runtime.describe()
        register(runtime, endpoint.uri, use_http_11=False)
        status, answer = http_json(
            "POST", f"{runtime.admin_url}/kafka-clusters", {"name": CLUSTER, "properties": {"bootstrap.servers": bootstrap}}
        )
        if status != 201:
            raise RuntimeError(f"{runtime_name}: creating the Kafka cluster failed with HTTP {status}: {answer}")
        record["backlog"] = _backlog(config, runtime, endpoint, bootstrap, notes)
        if config.callgrind is None:  # under callgrind the node is ~50 times slower: its latency means nothing
            record["paced"] = _paced(config, runtime, bootstrap, notes)
    except Exception as error:  # the run is recorded as failed, the others go on
        record["error"] = repr(error)
        log_line(f"{runtime_name} repetition {repetition} failed: {error!r}")
    finally:
        record["load_average_after"] = os.getloadavg()
        runtime.stop()
        endpoint.stop()
    return record


def _backlog(config: IngestConfig, runtime: Runtime, endpoint: EndpointProcess, bootstrap: str, notes: Path) -> dict[str, Any]:
    topic = f"bench-backlog-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, config.partitions)
    produce_backlog(bootstrap, topic, config.events, config.keys)
    window = CpuWindow(ProcessTree(runtime.root_pid()))
    endpoint_window = CpuWindow(ProcessTree(endpoint.pid))
    if config.callgrind is not None:
        callgrind_control("--instr=on", runtime.root_pid())
    window.begin()
    endpoint_window.begin()
    started_ns = time.time_ns()
    subscribe(runtime, topic)
    seen = wait_handled(notes, range(config.events), config.completion_timeout_s)
    window.end()
    endpoint_window.end()
    instructions = None if config.callgrind is None else dump_instructions(config.callgrind, runtime.root_pid())
    last_ns = max(handled_ns for _, handled_ns in seen.values())
    elapsed_s = (last_ns - started_ns) / 1e9
    result: dict[str, Any] = {"events": config.events, "seconds": elapsed_s, "events_per_s": config.events / elapsed_s}
    for name, cpu_s in (("runtime", window.cpu_s), ("endpoint", endpoint_window.cpu_s)):
        result[f"{name}_cpu_s"] = cpu_s
        result[f"{name}_cpu_ms_per_event"] = None if cpu_s is None else cpu_s * 1000 / config.events
    if instructions is not None:
        result["runtime_instructions_per_event"] = round(instructions / config.events)
        log_line(f"{runtime.name}: {result['runtime_instructions_per_event']} instructions per event (callgrind)")
    log_line(f"{runtime.name}: {config.events} events to completion in {elapsed_s:.1f} s = {result['events_per_s']:.0f}/s")
    return result


def _paced(config: IngestConfig, runtime: Runtime, bootstrap: str, notes: Path) -> dict[str, Any]:
    topic = f"bench-paced-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, config.partitions)
    subscribe(runtime, topic)
    warmup = config.events  # one event first: it proves the consumer runs before latencies count
    produce_paced(bootstrap, topic, warmup, 1, 1, config.keys)
    wait_handled(notes, range(warmup, warmup + 1), config.completion_timeout_s)
    start = warmup + 1
    count = produce_paced(bootstrap, topic, start, config.paced_rate, config.paced_s, config.keys)
    seen = wait_handled(notes, range(start, start + count), config.completion_timeout_s)
    latencies_s = [(seen[seq][1] - seen[seq][0]) / 1e9 for seq in range(start, start + count)]
    summary = latency_summary_ms(latencies_s)
    log_line(f"{runtime.name}: produce-to-handler p50 {summary['p50']:.1f} ms, p99 {summary['p99']:.1f} ms at {config.paced_rate}/s")
    return {"rate_per_s": config.paced_rate, "events": count, "latency_ms": {k: v for k, v in summary.items() if k != "curve"}}


# ---------------------------------------------------------------- report


def compare(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """duro/Restate ratios pair by pair (same repetition): throughput, p50, p99, CPU per event."""
    by_key = {(run["repetition"], run["runtime"]): run for run in runs if run["error"] is None}
    ratios: dict[str, list[float]] = {"throughput": [], "p50": [], "p99": [], "cpu_per_event": []}
    for (repetition, name), duro in by_key.items():
        restate = by_key.get((repetition, "restate"))
        if name != "duro" or restate is None:
            continue
        ratios["throughput"].append(ratio(duro["backlog"]["events_per_s"], restate["backlog"]["events_per_s"]))
        ratios["p50"].append(ratio(duro["paced"]["latency_ms"]["p50"], restate["paced"]["latency_ms"]["p50"]))
        ratios["p99"].append(ratio(duro["paced"]["latency_ms"]["p99"], restate["paced"]["latency_ms"]["p99"]))
        ratios["cpu_per_event"].append(ratio(duro["backlog"]["runtime_cpu_ms_per_event"], restate["backlog"]["runtime_cpu_ms_per_event"]))
    return {name: {**spread(values), "pairs": values} for name, values in ratios.items()}


def render(document: dict[str, Any]) -> str:
    config = document["config"]
    lines = [
        "# Kafka ingest: duro and Restate side by side",
        "",
        f"{config['events']} events over {config['keys']} keys on {config['partitions']} partitions to completion; latency at"
        f" {config['paced_rate']} events/s for {config['paced_s']} s. Handler: IngestSink/record (official Python SDK).",
        "",
        "| run | events/s to completion | runtime CPU ms/event | endpoint CPU ms/event | p50 ms | p99 ms"
        " | load average (1 min) before, after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in document["runs"]:
        name = f"{run['runtime']} #{run['repetition']}"
        if run["error"] is not None:
            lines.append(f"| {name} | failed: {run['error']} | | | | | |")
            continue
        backlog = run["backlog"]
        latency = run["paced"]["latency_ms"] if "paced" in run else {"p50": math.nan, "p99": math.nan}  # none under callgrind
        cpu = [_ms(backlog.get(f"{part}_cpu_ms_per_event")) for part in ("runtime", "endpoint")]  # older results: no endpoint CPU
        load = f"{run['load_average_before'][0]:.1f}, {run['load_average_after'][0]:.1f}"
        lines.append(
            f"| {name} | {backlog['events_per_s']:.0f} | {cpu[0]} | {cpu[1]} | {latency['p50']:.1f} | {latency['p99']:.1f} | {load} |"
        )
    ratios = document.get("ratios_duro_over_restate", {})
    if ratios and ratios["throughput"]["n"]:
        lines += ["", "| duro/Restate | median | min | max |", "| --- | --- | --- | --- |"]
        for name, label in (
            ("throughput", "throughput"),
            ("p50", "p50 latency"),
            ("p99", "p99 latency"),
            ("cpu_per_event", "CPU per event"),
        ):
            values = ratios[name]
            lines.append(f"| {label} | {values['median']:.2f} | {values['min']:.2f} | {values['max']:.2f} |")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def write(document: dict[str, Any], out_dir: Path) -> None:
    document["ratios_duro_over_restate"] = compare(document["runs"])
    (out_dir / "results.json").write_text(json.dumps(document, indent=1))
    (out_dir / "report.md").write_text(render(document))


# ---------------------------------------------------------------- command line


def parse(argv: Sequence[str] | None) -> tuple[IngestConfig, str | None]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kafka_ingest", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runtimes", default="duro,restate", help="comma-separated, run interleaved (default duro,restate)")
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--events", type=int, default=10_000, help="backlog events per run (default 10000)")
    parser.add_argument("--keys", type=int, default=100, help="record keys = object keys (default 100)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each topic (default 4)")
    parser.add_argument("--paced-rate", type=int, default=100, help="events per second in the latency phase (default 100)")
    parser.add_argument("--paced-s", type=float, default=20.0, help="length of the latency phase (default 20 s)")
    parser.add_argument("--completion-timeout-s", type=float, default=900.0, help="longest wait for the handler to see every event")
    parser.add_argument("--bootstrap", help="use this broker (HOST:PORT) instead of starting one")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument(
        "--callgrind", type=Path, help="duro only: run the node under callgrind; count its instructions per backlog event (dump here)"
    )
    args = parser.parse_args(argv)
    runtimes = tuple(name.strip() for name in args.runtimes.split(",") if name.strip())
    out_dir = args.out_dir or REPO_ROOT / "bench-results" / time.strftime("kafka-%Y%m%d-%H%M%S")
    config = IngestConfig(
        runtimes,
        args.repetitions,
        args.events,
        args.keys,
        args.partitions,
        args.paced_rate,
        args.paced_s,
        args.completion_timeout_s,
        out_dir,
        args.callgrind,
    )
    return config, args.bootstrap


def main(argv: Sequence[str] | None = None) -> int:
    config, bootstrap = parse(argv)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    broker = None
    if bootstrap is None:
        from benchmarks.endpoint import free_port

        broker = Broker(config.out_dir / "kafka", free_port())
        broker.start()
        bootstrap = broker.bootstrap
    document: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in config.__dict__.items()},
        "machine": describe_machine(config.out_dir),
        "runs": [],
    }
    try:
        for repetition in range(1, config.repetitions + 1):
            for runtime_name in config.runtimes:
                log_line(f"repetition {repetition}: {runtime_name}")
                document["runs"].append(run_once(config, runtime_name, repetition, bootstrap))
                write(document, config.out_dir)
    finally:
        if broker is not None:
            broker.stop()
    print((config.out_dir / "report.md").read_text())
    failed = [run for run in document["runs"] if run["error"] is not None]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
