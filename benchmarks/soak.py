"""Soak benchmark: steady load with a short retention for a long time; disk, RSS and stored invocations must stay flat, and restart time must not grow.

Run (embedded log, the documented 30 minutes with a 1 minute retention):

    python -m benchmarks.soak --duration-s 1800 --retention-ms 60000 --out docs/benchmarks/soak-embedded.json

On Kafka (a broker of your own; every restart is a *cold* node, new data dir and
node id, taking every partition over from a shared snapshot directory):

    python -m benchmarks.soak --log kafka --kafka-bootstrap 127.0.0.1:9092 --duration-s 1800 \\
        --out docs/benchmarks/soak-kafka.json

What it does: starts the benchmark endpoint (official Python SDK) and one
`duro serve` with journal, idempotency and workflow retention `--retention-ms`
and snapshots every `--snapshot-interval-records` records or
`--snapshot-interval-ms`; sends `Greeter.greet` calls and `Counter.add` calls
over `--keys` keys at about `--rate` per second from `--concurrency` workers;
every `--sample-interval-s` it records the data dir's bytes (log, state,
snapshots), the node's RSS, the invocations stored (`sys_invocation` count
through `POST /query`) and the calls completed. After `--first-restart-s` and
again at the end it restarts the node (stop with SIGINT, start) and measures the
time from start to the first successful call with every partition led; the
ratio of the two is the headline (target at most 1.5). A JSON file with every
sample and a Markdown summary beside it are written.

This is a benchmark, not a test: it asserts nothing and takes as long as asked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.endpoint import EndpointProcess
from benchmarks.process_stats import ProcessTree
from benchmarks.runtimes import DuroRuntime, http_json, register


@dataclass
class Sample:
    at_s: float
    log_bytes: int
    state_bytes: int
    snapshot_bytes: int
    rss_bytes: int
    stored_invocations: int | None
    completed_calls: int
    failed_calls: int


@dataclass
class Restart:
    at_s: float
    seconds_to_first_call: float
    cold: bool


@dataclass
class SoakResult:
    settings: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)


def directory_bytes(path: Path) -> int:
    """The bytes of the files under `path`; files and directories the node deletes while they are counted count 0."""
    total = 0
    for directory, _, files in os.walk(path):  # os.walk skips a directory that vanishes; rglob raised
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(directory, name)).st_size
    return total


class Load:
    """Closed-loop workers, paced to about `rate` calls per second in all, that keep going across restarts."""

    def __init__(self, concurrency: int, rate: float, keys: int) -> None:
        self.concurrency = concurrency
        self.rate = rate
        self.keys = keys
        self.base_url = ""
        self.completed = 0
        self.failed = 0
        self._paused = asyncio.Event()
        self._paused.set()

    def pause(self) -> None:
        self._paused.clear()

    def resume(self, base_url: str) -> None:
        self.base_url = base_url
        self._paused.set()

    async def run(self, until: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await asyncio.gather(*(self._worker(session, index, until) for index in range(self.concurrency)))

    async def _worker(self, session: aiohttp.ClientSession, index: int, until: float) -> None:
        interval_s = self.concurrency / self.rate
        sequence = 0
        while time.monotonic() < until:
            await self._paused.wait()
            started = time.monotonic()
            sequence += 1
            body: object
            if sequence % 2:
                path, body = "/Greeter/greet", f"soak-{index}"
            else:
                path, body = f"/Counter/key-{(index * 7919 + sequence) % self.keys}/add", 1
            try:
                async with session.post(f"{self.base_url}{path}", json=body) as response:
                    await response.read()
                    if response.status == 200:
                        self.completed += 1
                    else:
                        self.failed += 1
            except (aiohttp.ClientError, TimeoutError):
                self.failed += 1
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


def stored_invocations(runtime: DuroRuntime) -> int | None:
    """How many invocations the node stores (`sys_invocation`), None if the query failed."""
    request = urllib.request.Request(
        f"{runtime.admin_url}/query",
        data=json.dumps({"query": "SELECT count(*) AS n FROM sys_invocation"}).encode(),
        method="POST",
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            rows = json.loads(response.read())["rows"]
    except (OSError, ValueError, KeyError):
        return None
    return int(rows[0]["n"]) if rows else 0


def first_call_seconds(runtime: DuroRuntime, started: float, timeout_s: float = 600) -> float:
    """Seconds from `started` until a call answers 200 (the node serves every partition: its health waits for leaders)."""
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        try:
            status, _ = http_json("POST", f"{runtime.ingress_url}/Greeter/greet", "restart", timeout_s=5)
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"no call answered within {timeout_s} s of the restart")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(args.run_dir or f"bench-results/soak-{time.strftime('%Y%m%d-%H%M%S')}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.kafka_topic = f"duro.soak.{uuid.uuid4().hex[:8]}"
        self.node_count = 0
        self.endpoint = EndpointProcess("official", self.run_dir / "endpoint.log")
        self.runtime: DuroRuntime | None = None
        self.result = SoakResult(settings={k: v for k, v in vars(args).items() if k != "func"})
        self.load = Load(args.concurrency, args.rate, args.keys)
        self.started = 0.0

    def env(self) -> dict[str, str]:
        retention = str(self.args.retention_ms)
        env = {
            "DURO_INGRESS__DEFAULT_JOURNAL_RETENTION_MS": retention,
            "DURO_INGRESS__DEFAULT_IDEMPOTENCY_RETENTION_MS": retention,
            "DURO_INGRESS__DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS": retention,
            "DURO_SNAPSHOTS__INTERVAL_RECORDS": str(self.args.snapshot_interval_records),
            "DURO_SNAPSHOTS__INTERVAL_MS": str(self.args.snapshot_interval_ms),
            "DURO_LOG_MAX_SEGMENT_BYTES": str(self.args.segment_bytes),
        }
        if self.args.log == "kafka":
            env["DURO_SNAPSHOTS__REPOSITORY"] = str((self.run_dir / "shared-snapshots").resolve())
            env["DURO_KAFKA_METADATA_TOPIC"] = f"{self.kafka_topic}.meta"
        return env

    def new_runtime(self) -> DuroRuntime:
        """The node to start next: the same data dir on the embedded log, a cold one (new data dir and node id) on Kafka."""
        self.node_count += 1
        if self.args.log == "embedded":
            return DuroRuntime(self.run_dir / "node", self.args.partitions, env=self.env(), start_timeout_s=600)
        args = ["--kafka-bootstrap", self.args.kafka_bootstrap, "--kafka-topic", self.kafka_topic, "--node-id", str(self.node_count)]
        return DuroRuntime(self.run_dir / f"node-{self.node_count}", self.args.partitions, "kafka", args, self.env(), 600)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def sample(self) -> None:
        runtime = self.runtime
        assert runtime is not None
        data = runtime.run_dir / "data"
        stored = await asyncio.to_thread(stored_invocations, runtime)
        shared = self.run_dir / "shared-snapshots"
        sample = Sample(
            at_s=round(self.elapsed(), 1),
            log_bytes=directory_bytes(data / "log"),
            state_bytes=directory_bytes(data / "state"),
            snapshot_bytes=directory_bytes(data / "snapshots") + directory_bytes(shared),
            rss_bytes=ProcessTree(runtime.root_pid()).rss_bytes(),
            stored_invocations=stored,
            completed_calls=self.load.completed,
            failed_calls=self.load.failed,
        )
        self.result.samples.append(sample)
        print(json.dumps(asdict(sample)), flush=True)

    async def restart(self) -> None:
        assert self.runtime is not None
        self.load.pause()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(self.runtime.stop)
        self.runtime = self.new_runtime()
        started = time.monotonic()
        await asyncio.to_thread(self.runtime.start)
        seconds = await asyncio.to_thread(first_call_seconds, self.runtime, started)
        cold = self.args.log == "kafka"
        restart = Restart(round(self.elapsed(), 1), round(seconds, 3), cold)
        self.result.restarts.append(restart)
        print(json.dumps({"restart": asdict(restart)}), flush=True)
        self.load.resume(self.runtime.ingress_url)

    async def run(self) -> SoakResult:
        self.endpoint.start()
        self.runtime = self.new_runtime()
        self.runtime.start()
        register(self.runtime, self.endpoint.uri, use_http_11=False)
        self.started = time.monotonic()
        until = self.started + self.args.duration_s
        self.load.resume(self.runtime.ingress_url)
        loading = asyncio.create_task(self.load.run(until))
        first_restart_done = False
        try:
            while time.monotonic() < until:
                await asyncio.sleep(min(self.args.sample_interval_s, max(0.0, until - time.monotonic())))
                await self.sample()
                if not first_restart_done and self.elapsed() >= self.args.first_restart_s:
                    first_restart_done = True
                    await self.restart()
            await loading
            await self.restart()
            await self.sample()
        finally:
            loading.cancel()
            if self.runtime is not None:
                self.runtime.stop()
            self.endpoint.stop()
        return self.result


def summary(result: SoakResult) -> str:
    samples = result.samples
    window = [s for s in samples if s.at_s >= result.settings["retention_ms"] / 1000 * 2]
    lines = [
        "# Soak benchmark",
        "",
        f"Settings: `{json.dumps(result.settings)}`",
        "",
        "| time (s) | log MiB | state MiB | snapshots MiB | RSS MiB | stored invocations | calls done |",
        "|---|---|---|---|---|---|---|",
    ]
    mib = 1 << 20
    for s in samples:
        lines.append(
            f"| {s.at_s:.0f} | {s.log_bytes / mib:.1f} | {s.state_bytes / mib:.1f} | {s.snapshot_bytes / mib:.1f} | "
            f"{s.rss_bytes / mib:.0f} | {s.stored_invocations} | {s.completed_calls} |"
        )
    if window:
        first, last = window[: max(1, len(window) // 4)], window[-max(1, len(window) // 4) :]

        def mean(values: list[float]) -> float:
            return statistics.fmean(values) if values else float("nan")

        for name, pick in (
            ("disk (log+state+snapshots) MiB", lambda s: (s.log_bytes + s.state_bytes + s.snapshot_bytes) / mib),
            ("RSS MiB", lambda s: s.rss_bytes / mib),
            ("stored invocations", lambda s: float(s.stored_invocations or 0)),
        ):
            lines.append("")
            lines.append(f"- {name}: first quarter after two retention windows {mean([pick(s) for s in first]):.1f}, "
                         f"last quarter {mean([pick(s) for s in last]):.1f}")  # fmt: skip
    if len(result.restarts) >= 2:
        early, late = result.restarts[0], result.restarts[-1]
        kind = "cold takeover" if late.cold else "restart"
        lines += [
            "",
            f"- {kind} after {early.at_s:.0f} s: {early.seconds_to_first_call:.2f} s; after {late.at_s:.0f} s: "
            f"{late.seconds_to_first_call:.2f} s; ratio {late.seconds_to_first_call / early.seconds_to_first_call:.2f} (target <= 1.5)",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=1800)
    parser.add_argument("--retention-ms", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=250, help="calls per second in all (paced)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=24)
    parser.add_argument("--sample-interval-s", type=float, default=30)
    parser.add_argument("--first-restart-s", type=float, default=60)
    parser.add_argument("--snapshot-interval-records", type=int, default=5_000)
    parser.add_argument("--snapshot-interval-ms", type=int, default=30_000)
    parser.add_argument("--segment-bytes", type=int, default=8 << 20)
    parser.add_argument("--log", choices=["embedded", "kafka"], default="embedded")
    parser.add_argument("--kafka-bootstrap")
    parser.add_argument("--run-dir")
    parser.add_argument("--out", help="write the results here (JSON) and a Markdown summary beside it")
    args = parser.parse_args(argv)
    if args.log == "kafka" and not args.kafka_bootstrap:
        parser.error("--log kafka needs --kafka-bootstrap")
    result = asyncio.run(Soak(args).run())
    text = summary(result)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=1))
        out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
