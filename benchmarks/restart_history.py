"""Restart time against history length: `duro serve` on a data dir holding N completed invocations, with and without snapshots.

Run: `python -m benchmarks.restart_history --invocations 10000,100000,1000000 --out docs/benchmarks/restart-history.json`

For each N it builds two data dirs in-process with duro's own parts (the
embedded log, RocksDB, the state machine and, for the second, the
snapshotter), as a node that ran N invocations (Invoke, then Output and End)
would leave them: one without snapshots (the whole log kept, as before
snapshots existed) and one that took a snapshot of every partition every
`--snapshot-interval-records` records and trimmed the log below them. Then it
starts `duro serve` on each `--repetitions` times and measures the seconds from
process start until `GET /restate/health` answers 200, which it does once every
partition leads. Printed and written as JSON, with a Markdown table beside it.

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.endpoint import free_port
from benchmarks.runtimes import REPO_ROOT, http_json
from partition_worker import keys
from partition_worker.settings import SnapshotSettings
from partition_worker.snapshot_repository import DirectorySnapshotRepository
from partition_worker.snapshotter import LedPartition, SnapshotIdentity, Snapshotter
from partition_worker.state_machine import StateMachine, StateMachineConfig, counts
from partition_worker.store import RocksDatabase, Transaction
from protocol import service_protocol_pb2 as pb
from protocol.frames import message_type_of
from protocol.routing import keyed_or_random_id, partition_key_of
from wal.embedded import EmbeddedLog, EmbeddedLogLimits
from wal.partitioner import partition_of
from wal.records import (
    AnnounceLeader,
    AttemptEvents,
    AttemptFrame,
    Envelope,
    Invoke,
    Record,
    RecordBody,
    ServiceType,
    Target,
    decode_record,
    encode_record,
)

GREETER = Target("Greeter", "greet", None, ServiceType.SERVICE, None)
BATCH_INVOCATIONS = 2_000


@dataclass
class Measurement:
    invocations: int
    snapshots: bool
    log_bytes: int
    state_bytes: int
    build_s: float
    restart_s: list[float]

    @property
    def median_restart_s(self) -> float:
        return statistics.median(self.restart_s)


def _frames() -> tuple[AttemptFrame, ...]:
    output = pb.OutputCommandMessage()
    output.value.content = b'"Hello soak!"'
    return tuple(AttemptFrame(int(message_type_of(m)), 0, m.SerializeToString()) for m in (output, pb.EndMessage()))


FRAMES = _frames()


def directory_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file()) if path.exists() else 0


def prepare_data_dir(data_dir: Path, partitions: int) -> str:
    """A new data dir with its node file, as `duro serve` creates it; returns the log id."""
    data_dir.mkdir(parents=True)
    log_id = uuid.uuid4().hex
    (data_dir / "duro.json").write_text(json.dumps({"partitions": partitions, "log_id": log_id}))
    return log_id


async def build_history(data_dir: Path, partitions: int, invocations: int, snapshots: bool, interval_records: int) -> None:
    """Leave in `data_dir` what a node that ran `invocations` greet calls leaves (see the module docstring)."""
    log_id = prepare_data_dir(data_dir, partitions)
    log = await EmbeddedLog.open(data_dir / "log", partitions, EmbeddedLogLimits(max_segment_bytes=8 << 20))
    database = RocksDatabase(str(data_dir / "state"))
    machines = [StateMachine(StateMachineConfig(partition=p)) for p in range(partitions)]
    applied = [-1] * partitions
    snapshotter = None
    if snapshots:
        snapshotter = Snapshotter(
            database,
            DirectorySnapshotRepository(data_dir / "snapshots"),
            log,
            SnapshotIdentity(f"embedded:{log_id}", partitions, 1),
            lambda: [LedPartition(p, applied[p]) for p in range(partitions)],
            data_dir / "snapshot-scratch",
            SnapshotSettings(interval_records=interval_records, interval_ms=3_600_000),
        )

    async def append_and_apply(partition: int, bodies: list[RecordBody], now_ms: int, epoch: int) -> None:
        entries = [encode_record(Record(Envelope(now_ms, epoch), body)) for body in bodies]
        last = await log.append(partition, entries)
        txn = Transaction(database.partition(partition))
        for entry in entries:
            machines[partition].apply(txn, decode_record(entry))
        applied[partition] = last
        txn.put(keys.APPLIED_OFFSET, keys.encode_u64(last))
        txn.commit()

    now_ms = time.time_ns() // 1_000_000
    for partition in range(partitions):
        counts.build(database.partition(partition))  # as a processor prepares a store that has applied nothing
        await append_and_apply(partition, [AnnounceLeader(1, 1)], now_ms, 0)
    done = 0
    while done < invocations:
        grouped: dict[int, list[RecordBody]] = {}
        for _ in range(min(BATCH_INVOCATIONS, invocations - done)):
            invocation_id = keyed_or_random_id(None)
            partition = partition_of(partition_key_of(invocation_id), partitions)
            grouped.setdefault(partition, []).extend(
                [Invoke(invocation_id, GREETER, b'"soak"'), AttemptEvents(invocation_id, 1, FRAMES, "dp_bench", 6)]
            )
        done += min(BATCH_INVOCATIONS, invocations - done)
        for partition, bodies in grouped.items():
            await append_and_apply(partition, bodies, now_ms, 1)
        if snapshotter is not None:
            await snapshotter.snapshot_due()
    await log.close()
    database.close()


def measure_restart(data_dir: Path, partitions: int, timeout_s: float = 1800) -> float:
    """Seconds from starting `duro serve` on `data_dir` until its health says every partition leads."""
    ingress, admin = free_port(), free_port()
    args = [
        sys.executable, "-m", "duro", "serve", "--data-dir", str(data_dir), "--partitions", str(partitions),
        "--ingress-port", str(ingress), "--admin-port", str(admin), "--log-level", "warning",
    ]  # fmt: skip
    with open(data_dir.parent / f"{data_dir.name}.log", "ab") as output:
        started = time.monotonic()
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True)
        try:
            while time.monotonic() - started < timeout_s:
                if process.poll() is not None:
                    raise RuntimeError(f"duro exited with {process.returncode}; see {output.name}")
                try:
                    if http_json("GET", f"http://127.0.0.1:{ingress}/restate/health", timeout_s=2)[0] == 200:
                        return time.monotonic() - started
                except OSError:
                    pass
                time.sleep(0.01)
            raise TimeoutError(f"duro was not ready within {timeout_s} s")
        finally:
            process.send_signal(2)
            process.wait(timeout=60)


def markdown(measurements: list[Measurement]) -> str:
    mib = 1 << 20
    lines = [
        "# Restart time against history length",
        "",
        "| invocations | snapshots | log on disk MiB | state MiB | restart s (median) | restarts s |",
        "|---|---|---|---|---|---|",
    ]
    for m in measurements:
        lines.append(
            f"| {m.invocations:,} | {'yes' if m.snapshots else 'no'} | {m.log_bytes / mib:.1f} | {m.state_bytes / mib:.1f} | "
            f"{m.median_restart_s:.2f} | {', '.join(f'{s:.2f}' for s in m.restart_s)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", default="10000,100000,1000000")
    parser.add_argument("--partitions", type=int, default=24)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--snapshot-interval-records", type=int, default=20_000)
    parser.add_argument("--run-dir", default=f"bench-results/restart-history-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--out")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    measurements = []
    for invocations in (int(n) for n in args.invocations.split(",")):
        for snapshots in (False, True):
            data_dir = run_dir / f"{invocations}-{'snapshots' if snapshots else 'plain'}"
            started = time.monotonic()
            asyncio.run(build_history(data_dir, args.partitions, invocations, snapshots, args.snapshot_interval_records))
            build_s = time.monotonic() - started
            restarts = [measure_restart(data_dir, args.partitions) for _ in range(args.repetitions)]
            measurement = Measurement(
                invocations, snapshots, directory_bytes(data_dir / "log"), directory_bytes(data_dir / "state"), round(build_s, 1), restarts
            )
            measurements.append(measurement)
            print(json.dumps({**asdict(measurement), "median_restart_s": measurement.median_restart_s}), flush=True)
            if not args.keep:
                shutil.rmtree(data_dir)
    text = markdown(measurements)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([asdict(m) for m in measurements], indent=1))
        out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
