"""Prometheus metrics of the log: append latency and records per append, by backend (embedded, kafka); where Kafka tails take their entries from."""

from __future__ import annotations

from prometheus_client import Counter

from wal.hot_metrics import HotHistogram

LOG_APPEND_DURATION_SECONDS = "duro_log_append_duration_seconds"
LOG_APPEND_BATCH_RECORDS = "duro_log_append_batch_records"
LOG_KAFKA_TAIL_ENTRIES_TOTAL = "duro_log_kafka_tail_entries_total"
TAIL_SOURCE_FETCHED = "fetched"
TAIL_SOURCE_ACKNOWLEDGED = "acknowledged"

_DURATION_BUCKETS_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_BATCH_BUCKETS_RECORDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

append_duration = HotHistogram(
    LOG_APPEND_DURATION_SECONDS,
    "Time from an append call to its entries being durable (fsync on the embedded log, acks=all on Kafka), by backend.",
    ["backend"],
    _DURATION_BUCKETS_SECONDS,
)
append_batch = HotHistogram(LOG_APPEND_BATCH_RECORDS, "Records in one append call, by backend.", ["backend"], _BATCH_BUCKETS_RECORDS)
tail_entries = Counter(
    LOG_KAFKA_TAIL_ENTRIES_TOTAL,
    "Entries the Kafka log's tails took, by source: `acknowledged` (this node's appends, at their acknowledgement) or `fetched`.",
    ["source"],
)


class AppendMeter:
    """The two append series of one backend, with their label bound once (appends are on the hot path)."""

    def __init__(self, backend: str) -> None:
        self._duration = append_duration.labels(backend)
        self._batch = append_batch.labels(backend)

    def observe(self, records: int, seconds: float) -> None:
        self._duration.observe(seconds)
        self._batch.observe(records)
