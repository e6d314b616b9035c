"""Microbenchmark of the Kafka log's append-to-apply path: how long after an append its own tail yields the entry.

Run: `python benchmarks/kafka_tail_latency.py --bootstrap 127.0.0.1:9092 --appends 500`
(a broker from `scripts/kafka start DIR PORT`). One appender appends one entry
after another to one partition, each once the previous one came out of the
tail, as a hot key's hand-overs do: each append waits for its acknowledgement
(acks=all) and then for the tail to yield it. Prints the percentiles of
append-to-acknowledgement and append-to-tail, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid

from wal.kafka import KafkaLog


async def run(bootstrap: str, appends: int, entry_bytes: int) -> str:
    log = await KafkaLog.open(bootstrap, f"tail-latency-{uuid.uuid4().hex}", 1)
    entry = bytes(entry_bytes)
    acked_s: list[float] = []
    tailed_s: list[float] = []
    try:
        async with contextlib.aclosing(log.tail(0, 0)) as batches:
            for index in range(appends):
                started = time.perf_counter()
                offset = await log.append(0, [entry])
                acked_s.append(time.perf_counter() - started)
                assert offset == index, f"expected offset {index}, got {offset}"
                async with asyncio.timeout(30):
                    batch = await anext(batches)
                tailed_s.append(time.perf_counter() - started)
                assert batch[-1][0] == index, f"the tail yielded {batch[-1][0]}, expected {index}"
    finally:
        await log.close()
    return f"appends={appends} entry_bytes={entry_bytes} " + " ".join(
        f"{name}_p50_ms={percentile(values, 50):.2f} {name}_p99_ms={percentile(values, 99):.2f}"
        for name, values in (("ack", acked_s), ("tail", tailed_s))
    )


def percentile(values_s: list[float], rank: int) -> float:
    return statistics.quantiles(values_s, n=100)[rank - 1] * 1000 if rank < 100 else max(values_s) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True, help="host:port of a broker")
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--entry-bytes", type=int, default=200)
    arguments = parser.parse_args()
    print(asyncio.run(run(arguments.bootstrap, arguments.appends, arguments.entry_bytes)), flush=True)


if __name__ == "__main__":
    main()
