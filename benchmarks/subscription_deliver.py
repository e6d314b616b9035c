"""The subscription consumer's own CPU per record, without a broker or a node: records in, Invokes appended, outcomes settled.

    python -m benchmarks.subscription_deliver                          # batches of 1 (the paced phase) and of 500 (a backlog)
    python -m benchmarks.subscription_deliver --batch-records 1 --records 20000 --rounds 7

Drives `SubscriptionConsumer._deliver` and its settling with records built
beforehand (aiokafka's `ConsumerRecord`, 100 keys, JSON values like
`benchmarks/kafka_ingest.py`'s), a `MemoryLog` of 24 partitions and the node's
`ReplyBus`, on uvloop as in the node; every Invoke's outcome is delivered to its sink as a partition
leader would. What is timed is the consumer's part of one event in
`kafka_ingest`: building the Invoke, registering its sink, the append call,
settling the batch, the outcome's callback. The handler's registration is a
stand-in with the attributes the consumer reads. Prints CPU microseconds per
record (`time.process_time`, the minimum over `--rounds`: the figure least
moved by other work on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import types
from collections.abc import Sequence

import uvloop
from aiokafka import ConsumerRecord, TopicPartition

from ingress.settings import IngressSettings, SubscriptionSettings
from ingress.subscription_consumer import SubscriptionConsumer
from ingress.subscriptions import KafkaCluster, Subscription
from protocol.retention import InvocationRetention
from wal.memory import MemoryLog
from wal.records import HandlerKind, RetryPolicy, ServiceType
from wal.replies import Reply, ReplyBus, ReplyKind

TOPIC = "bench-events"
KAFKA_PARTITIONS = 4


def _handler() -> types.SimpleNamespace:
    """A stand-in for the registry's resolved `IngestSink/record`: the attributes the consumer reads."""
    return types.SimpleNamespace(
        service_type=ServiceType.VIRTUAL_OBJECT,
        kind=HandlerKind.EXCLUSIVE,
        handler=types.SimpleNamespace(input=types.SimpleNamespace(expects_json=True)),
        retention=lambda defaults, has_idempotency_key: InvocationRetention(86_400_000, 0),
        retry_policy=lambda default: default,
    )


def _records(count: int, keys: int) -> list[ConsumerRecord[bytes, bytes]]:
    now_ms = time.time_ns() // 1_000_000
    records = []
    for seq in range(count):
        partition = seq % KAFKA_PARTITIONS
        key = f"k{seq % keys}".encode()
        value = json.dumps({"seq": seq, "t": time.time_ns()}).encode()
        records.append(ConsumerRecord(TOPIC, partition, seq // KAFKA_PARTITIONS, now_ms, 0, key, value, None, len(key), len(value), ()))
    return records


async def _round(records: Sequence[ConsumerRecord[bytes, bytes]], batch_records: int) -> float:
    """Deliver `records` in batches of `batch_records`, settle each; CPU seconds spent."""
    handler = _handler()
    deployments = types.SimpleNamespace(resolve=lambda service, name: handler)
    subscription = Subscription(
        "sub_bench", "bench", TOPIC, "IngestSink", "record", ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE, {"group.id": "bench"}
    )
    bus = ReplyBus(1)
    log = MemoryLog(24)
    consumer = SubscriptionConsumer(
        subscription,
        KafkaCluster("bench", {"bootstrap.servers": "127.0.0.1:9"}, 0),
        deployments,  # type: ignore[arg-type]  # a stand-in registry: resolve() alone
        log,
        bus,
        SubscriptionSettings(max_pending_invocations=len(records) + 1, resume_pending_invocations=1),
        IngressSettings(),
        RetryPolicy(),
        1,
    )
    settler = asyncio.create_task(consumer._settle_forever())
    started = time.process_time()
    for start in range(0, len(records), batch_records):
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for record in records[start : start + batch_records]:
            batch.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        await consumer._deliver(batch)
        await consumer._inflight.join()
        for pending in list(consumer._pending.values()):
            bus.deliver(pending.sink, Reply(ReplyKind.OUTCOME, pending.invocation_id))
        await asyncio.sleep(0)  # the outcomes' callbacks run
    spent = time.process_time() - started
    assert not consumer._pending, "every outcome settled its pending invocation"
    appended = sum([await log.end_offset(partition) for partition in range(log.partition_count)])
    assert appended == len(records), f"{appended} Invokes appended for {len(records)} records"
    settler.cancel()
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.subscription_deliver", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch-records", type=int, action="append", help="records per batch (repeatable; default 1 and 500)")
    parser.add_argument("--records", type=int, default=10_000, help="records per round (default 10000)")
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    records = _records(args.records, args.keys)
    for batch_records in args.batch_records or [1, 500]:
        spent = []
        for _ in range(args.rounds):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # the node's event loop (duro/node.py)
                spent.append(runner.run(_round(records, batch_records)))
        per_record_us = [seconds * 1e6 / len(records) for seconds in spent]
        print(
            f"batches of {batch_records}: {min(per_record_us):.1f} µs CPU per record"
            f" (min of {args.rounds} rounds; all: {', '.join(f'{value:.1f}' for value in per_record_us)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
