"""`KafkaLogSettings`: every setting and bound of the Kafka `Log` backend, with defaults, checked when made."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOPIC = "duro.log"
COMPRESSION_TYPES = (None, "gzip", "snappy", "lz4", "zstd")

_BATCH_HEADER_BYTES = 61  # the fixed header of a Kafka record batch (magic v2)
_RECORD_OVERHEAD_BYTES = 32  # at most what one record (no key, no headers) adds to its value in a batch, rounded up
_MAX_BATCH_OVERHEAD_BYTES = 4096  # what the producer and the topic allow above max_append_bytes for batch headers


@dataclass(frozen=True, slots=True)
class KafkaLogSettings:
    """How a `KafkaLog` creates its topic, talks to the brokers, and how much it holds at once."""

    replication_factor: int = 1
    """Replicas of each partition when the log creates its topic (1 for a single broker; 3 for a real cluster)."""
    min_insync_replicas: int = 1
    """`min.insync.replicas` of a topic the log creates: with acks=all, how many replicas hold an entry before it is acknowledged."""
    segment_ms: int = 3_600_000
    """`segment.ms` of a topic the log creates: the broker rolls a partition's segment file this often, so that records
    deleted below a snapshot (DeleteRecords) free their disk within about this long (Kafka's default is 7 days)."""
    connect_timeout_ms: int = 30_000
    """How long `open` (and a tail that starts) keeps retrying an unreachable bootstrap server before it fails with LogError."""
    max_connect_backoff_ms: int = 2_000
    """The longest pause between two connection attempts (the pause starts at 100 ms and doubles)."""
    request_timeout_ms: int = 30_000
    """One request to a broker (a fetch, a metadata or offsets request, creating the topic); a produce request waits up to
    `append_timeout_ms` instead, since the producer keeps a batch only that long (see there)."""
    append_timeout_ms: int = 60_000
    """How long an append waits for its acknowledgement (the producer retries through a broker outage meanwhile); then LogError.

    The entries of an append that timed out may still be written later, before
    the entries of later appends to the same partition. The producer keeps an
    unsent batch (no partition leader during a broker outage) and waits for a
    produce response up to the larger of this and `request_timeout_ms`, so an
    outage shorter than this is waited out.
    """
    linger_ms: int = 0
    """How long the producer waits for more batches before sending; appends are already grouped per partition while one is in flight."""
    compression_type: str | None = None
    """Compression of record batches: None (off), gzip, snappy, lz4 or zstd."""
    max_append_bytes: int = 8 * 1024 * 1024
    """The largest one append may be (payloads plus a 32-byte allowance per entry); larger appends are refused with ValueError."""
    max_group_bytes: int = 1024 * 1024
    """Appends to one partition queued while a batch is in flight are sent as one batch of up to this size (it always takes one append)."""
    max_pending_appends: int = 10_000
    """Appends handed to the log and not yet acknowledged, all partitions together; further appends wait for room."""
    max_pending_bytes: int = 64 * 1024 * 1024
    """Bytes of appends handed to the log and not yet acknowledged; further appends wait for room (one append always fits)."""
    max_fetch_bytes: int = 4 * 1024 * 1024
    """How much one tail fetches from its partition per request (a single larger batch is still returned whole)."""
    max_tail_ahead_bytes: int = 4 * 1024 * 1024
    """Of this node's acknowledged appends, how much one tail holds while it waits for the fetcher to bring the entries
    before them (other nodes' appends); appends beyond it are left to the fetcher (payloads plus 64 bytes each).

    A tail takes the node's own appends at their acknowledgement (acks=all),
    without waiting for the fetcher to bring them back; see `wal.kafka_tail_merge`.
    """
    max_fetch_wait_ms: int = 500
    """How long the broker holds a tail's fetch open when there is nothing new (a new entry answers it at once)."""
    client_id: str = "duro"
    """The client id the brokers see in their logs and quotas."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in ("compression_type", "client_id"):
                continue
            minimum = 0 if name == "linger_ms" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.compression_type not in COMPRESSION_TYPES:
            raise ValueError(f"compression_type must be one of {COMPRESSION_TYPES}, got {self.compression_type!r}")
        if not isinstance(self.client_id, str) or not self.client_id:
            raise ValueError(f"client_id must be a non-empty str, got {self.client_id!r}")
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) must be at most replication_factor ({self.replication_factor})"
            )
        if self.max_group_bytes > self.max_append_bytes:
            raise ValueError(f"max_group_bytes ({self.max_group_bytes}) must be at most max_append_bytes ({self.max_append_bytes})")

    @property
    def max_batch_bytes(self) -> int:
        """The largest record batch the log sends: the producer's batch and request size and the topic's `max.message.bytes`."""
        return self.max_append_bytes + _MAX_BATCH_OVERHEAD_BYTES


def framed_bytes_of(entries: list[bytes]) -> int:
    """What `entries` count against `max_append_bytes`, `max_group_bytes` and `max_pending_bytes`: payloads plus 32 bytes each."""
    return sum(len(entry) for entry in entries) + _RECORD_OVERHEAD_BYTES * len(entries)


assert _BATCH_HEADER_BYTES < _MAX_BATCH_OVERHEAD_BYTES, "a full group must fit in the producer's batch"
