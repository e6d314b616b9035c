"""Snapshots in a real S3-compatible store (MinIO): the repository against it, and a cold Kafka node restoring from it.

The cold-node test counts what it replays: the node that takes every
partition over restores each partition's snapshot from the bucket and applies
only the records after it, fewer than the topic ever held, and the topic no
longer holds the records below the snapshots (DeleteRecords).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from partition_worker.snapshot_manifest import DATA_NAME, SnapshotManifest, TornSnapshotError, file_sha256
from partition_worker.snapshot_repository import S3SnapshotRepository
from tests.e2e.test_snapshots import Sender, counter, replayed_records, wait_counted
from tests.minio_server import MinioServer, unavailable_reason
from tests.processes import DuroServer, ServiceEndpoint, wait_until

PARTITIONS = 4


@pytest.fixture
def minio(tmp_path: Path) -> Iterator[MinioServer]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = MinioServer(tmp_path / "minio")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def manifest_of(partition: int, applied_offset: int, data: Path) -> SnapshotManifest:
    return SnapshotManifest(
        partition=partition,
        partition_count=PARTITIONS,
        applied_offset=applied_offset,
        leader_epoch=1,
        log_name="kafka:t",
        data_bytes=data.stat().st_size,
        data_sha256=file_sha256(data),
        rows=1,
        created_at_ms=0,
        node_id=1,
    )


async def test_the_s3_repository_stores_lists_fetches_and_deletes_snapshots(tmp_path: Path, minio: MinioServer) -> None:
    repository = S3SnapshotRepository(minio.client(), minio.bucket, "cluster-a")
    data = tmp_path / "data.sst"
    data.write_bytes(b"rows" * 1000)
    for offset in (41, 7):
        await repository.put(manifest_of(2, offset, data), data)
    assert await repository.offsets(2) == [7, 41]
    assert await repository.offsets(1) == []
    manifest, fetched = await repository.fetch(2, 41, tmp_path / "scratch")
    assert manifest.applied_offset == 41 and fetched.read_bytes() == data.read_bytes()
    # A writer that died after uploading the data and before the manifest: not listed, then discarded.
    client = minio.client()
    client.put_object(Bucket=minio.bucket, Key=f"cluster-a/partition-00002/{99:020d}/{DATA_NAME}", Body=b"half")
    assert await repository.offsets(2) == [7, 41]
    assert await repository.discard_torn(2) == 1
    # Data damaged after the manifest was written: refused as torn, never loaded.
    client.put_object(Bucket=minio.bucket, Key=f"cluster-a/partition-00002/{41:020d}/{DATA_NAME}", Body=b"rows" * 999 + b"ROWS")
    with pytest.raises(TornSnapshotError, match="SHA-256"):
        await repository.fetch(2, 41, tmp_path / "scratch-2")
    await repository.delete(2, 7)
    assert await repository.offsets(2) == [41]
    listed = client.list_objects_v2(Bucket=minio.bucket, Prefix="cluster-a/partition-00002/")
    assert {item["Key"].rsplit("/", 2)[1] for item in listed["Contents"]} == {f"{41:020d}"}


def topic_offsets(bootstrap: str, topic: str) -> tuple[list[int], list[int]]:
    """(start offsets, end offsets) of the topic's partitions."""

    async def read() -> tuple[list[int], list[int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            starts = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            return [starts[p] for p in partitions], [ends[p] for p in partitions]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def kafka_node(tmp_path: Path, name: str, node_id: int, bootstrap: str, topic: str, env: dict[str, str]) -> DuroServer:
    args = ["--log", "kafka", "--kafka-bootstrap", bootstrap, "--kafka-topic", topic, "--node-id", str(node_id)]
    node = DuroServer(tmp_path / name, tmp_path / f"{name}.log", partitions=PARTITIONS, extra_args=args, env=env)
    node.start()
    node.wait_ready(timeout_s=90)
    return node


def test_a_cold_kafka_node_restores_from_s3_and_replays_fewer_records_than_the_topic_holds(
    tmp_path: Path, kafka_bootstrap: str, minio: MinioServer, official_python_service: ServiceEndpoint
) -> None:
    topic = f"duro-snap-{uuid.uuid4().hex[:8]}"
    env = {
        **minio.env(f"{topic}/"),
        "DURO_KAFKA_METADATA_TOPIC": f"{topic}.meta",
        "DURO_SNAPSHOTS__INTERVAL_RECORDS": "200",
        "DURO_SNAPSHOTS__CHECK_INTERVAL_MS": "50",
    }
    first = kafka_node(tmp_path, "node-1", 1, kafka_bootstrap, topic, env)
    keys = [f"s{i}" for i in range(8)]
    try:
        first.register(official_python_service.uri)
        with Sender(first, keys) as sender:
            wait_until(lambda: first.log_path.read_text().count("snapshot at offset") >= 2 * PARTITIONS, 240, "two snapshots a partition")
        wait_counted(first, sender.acknowledged)
        expected = {key: counter(first, key) for key in keys}
        wait_until(lambda: all(start > 0 for start in topic_offsets(kafka_bootstrap, topic)[0]), 60, "DeleteRecords on every partition")
    finally:
        first.stop()
    starts, ends = topic_offsets(kafka_bootstrap, topic)
    second = kafka_node(tmp_path, "node-2", 2, kafka_bootstrap, topic, env)
    try:
        wait_until(lambda: second.log_path.read_text().count("caught up: replayed") >= PARTITIONS, 90, "every partition to catch up")
        log_text = second.log_path.read_text()
        assert len(re.findall(r"partition \d+: restored the snapshot at offset", log_text)) == PARTITIONS, log_text[-3000:]
        replayed, held = replayed_records(second), sum(ends)
        assert replayed <= held - sum(starts), "only records the topic still holds are replayed"
        assert replayed < held / 4, f"replayed {replayed} records; the topic has held {held}, of which {sum(starts)} were deleted"
        assert {key: counter(second, key) for key in keys} == expected
        status, _, body = second.call(f"/Counter/{keys[0]}/add", 1)
        assert status == 200 and json.loads(body) == expected[keys[0]] + 1
    finally:
        second.stop()
