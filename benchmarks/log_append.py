"""Microbenchmark of `EmbeddedLog.append`: appends per second with N concurrent appenders of small entries.

Run: `python benchmarks/log_append.py --appenders 1,16,256 --duration-s 3`. Each
appender awaits one single-entry append after another, spreading over the
partitions; one line per appender count is printed with throughput, syncs per
second, appends per sync and append latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from wal.embedded import EmbeddedLog, EmbeddedLogLimits


async def run_once(
    directory: Path, appender_count: int, duration_s: float, entry_bytes: int, partition_count: int, limits: EmbeddedLogLimits
) -> str:
    log = await EmbeddedLog.open(directory, partition_count, limits)
    entry = bytes(entry_bytes)
    latencies_s: list[float] = []
    deadline = time.monotonic() + duration_s

    async def appender(index: int) -> None:
        partition = index % partition_count
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await log.append(partition, [entry])
            latencies_s.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*(appender(index) for index in range(appender_count)))
    elapsed_s = time.monotonic() - started
    syncs = log.fsync_count
    await log.close()
    quantiles = statistics.quantiles(latencies_s, n=100) if len(latencies_s) > 1 else [latencies_s[0]] * 99
    return (
        f"embedded appenders={appender_count} entry_bytes={entry_bytes} partitions={partition_count} "
        f"appends/s={len(latencies_s) / elapsed_s:,.0f} fsyncs/s={syncs / elapsed_s:,.0f} "
        f"appends/fsync={len(latencies_s) / max(syncs, 1):.1f} "
        f"p50_ms={quantiles[49] * 1000:.2f} p99_ms={quantiles[98] * 1000:.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appenders", default="1,4,16,64,256", help="comma-separated appender counts")
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument("--entry-bytes", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--max-group-commit-delay-us", type=int, default=0)
    parser.add_argument("--directory", type=Path, default=None, help="where to put the logs (default: a temporary directory)")
    arguments = parser.parse_args()
    limits = EmbeddedLogLimits(max_group_commit_delay_us=arguments.max_group_commit_delay_us)
    with tempfile.TemporaryDirectory(dir=arguments.directory) as root:
        for appender_count in (int(count) for count in arguments.appenders.split(",")):
            directory = Path(root) / f"appenders-{appender_count}"
            line = await run_once(directory, appender_count, arguments.duration_s, arguments.entry_bytes, arguments.partitions, limits)
            print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
