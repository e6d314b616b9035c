"""`KafkaLogSettings` and the argument checks of `KafkaLog.open` that need no broker."""

from __future__ import annotations

import pytest

from wal.kafka import KafkaLog, KafkaLogSettings
from wal.kafka_settings import framed_bytes_of
from wal.kafka_topic import topic_configs


def test_defaults_are_valid_and_bound_the_batch_size() -> None:
    settings = KafkaLogSettings()
    assert settings.max_batch_bytes > settings.max_append_bytes >= settings.max_group_bytes
    assert framed_bytes_of([b"", b"abc"]) == 3 + 2 * 32


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"replication_factor": 1, "min_insync_replicas": 2}, "min_insync_replicas \\(2\\) must be at most replication_factor \\(1\\)"),
        ({"connect_timeout_ms": 0}, "connect_timeout_ms must be an int >= 1, got 0"),
        ({"append_timeout_ms": 1.5}, "append_timeout_ms must be an int >= 1"),
        ({"linger_ms": -1}, "linger_ms must be an int >= 0"),
        ({"compression_type": "brotli"}, "compression_type must be one of"),
        ({"max_group_bytes": 10, "max_append_bytes": 5}, "max_group_bytes \\(10\\) must be at most max_append_bytes \\(5\\)"),
        ({"client_id": ""}, "client_id must be a non-empty str"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KafkaLogSettings(**fields)  # type: ignore[arg-type]


def test_created_topics_keep_everything_and_fit_the_largest_append() -> None:
    configs = topic_configs(
        KafkaLogSettings(min_insync_replicas=2, replication_factor=3, max_append_bytes=1 << 20, max_group_bytes=1 << 16)
    )
    assert configs["retention.ms"] == "-1" and configs["retention.bytes"] == "-1"
    assert configs["min.insync.replicas"] == "2"
    assert int(configs["max.message.bytes"]) > 1 << 20
    assert configs["segment.ms"] == "3600000", "segments roll hourly, so records deleted below a snapshot free their disk"


@pytest.mark.parametrize("topic", ["", "has space", "a/b", ".", "..", "x" * 250])
async def test_bad_topic_names_are_refused_before_connecting(topic: str) -> None:
    with pytest.raises(ValueError, match="topic must be"):
        await KafkaLog.open("127.0.0.1:1", topic, 1)


async def test_bad_partition_count_and_bootstrap_are_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="partition_count must be"):
        await KafkaLog.open("127.0.0.1:1", "duro.log", 0)
    with pytest.raises(ValueError, match="bootstrap must be"):
        await KafkaLog.open("", "duro.log", 1)
