"""Settings of the partition worker's effect side: the invoker and the partition processor, each bound with its default.

These models are the one place their defaults are declared; the node's
settings (`duro.settings.DuroSettings`) embed them as `invoker` and
`processor`, so each has a `DURO_INVOKER__...` / `DURO_PROCESSOR__...`
variable and a TOML key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from protocol import frames, h2c


class InvokerSettings(BaseModel):
    """How the invoker runs attempts against deployments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent_attempts: int = Field(default=10_000, gt=0, description="Attempts running at once on this node.")
    max_protocol_version: int = Field(
        default=6, ge=5, le=7, description="Highest service protocol version offered (Restate's default is 6)."
    )
    inactivity_timeout_ms: int = Field(
        default=60_000,
        gt=0,
        description="No message either way for this long: close the request so the SDK suspends (default of services that set none).",
    )
    abort_timeout_ms: int = Field(
        default=600_000,
        gt=0,
        description="After the inactivity close, abandon the attempt after this long; it is retried (default of services that set none).",
    )
    max_eager_state_bytes: int = Field(default=1 << 20, gt=0, description="State sent with Start; larger states are fetched lazily.")
    max_append_hold_ms: int = Field(
        default=5,
        ge=0,
        description="Messages no SDK waits on (eager state reads, state writes, the output) wait at most this long to be appended with"
        " the next ones, so an attempt's End usually goes in the same log record (one fsync) instead of waiting behind theirs; 0 off.",
    )
    max_frame_bytes: int = Field(
        default=frames.DEFAULT_MAX_FRAME_BYTES, gt=0, description="Largest protocol message accepted from a deployment."
    )
    max_pending_notifications: int = Field(default=10_000, gt=0, description="Notifications queued for one attempt's stream.")
    connect_timeout_ms: int = Field(default=5_000, gt=0, description="Connect timeout towards deployments.")
    max_connections_per_origin: int = Field(
        default=h2c.DEFAULT_MAX_CONNECTIONS_PER_ORIGIN, gt=0, description="HTTP/2 connections kept per deployment origin."
    )
    end_record_retry_initial_backoff_ms: int = Field(
        default=100,
        gt=0,
        description="The record that ends an attempt was refused by the log: try again after this long, doubling, while the partition's leader leads.",
    )
    end_record_retry_max_backoff_ms: int = Field(default=5_000, gt=0, description="Longest pause between tries of an attempt's end record.")
    h2_ping_interval_ms: int = Field(
        default=h2c.DEFAULT_PING_INTERVAL_MS, ge=0, description="Each HTTP/2 connection to a deployment sends a PING this often (0: never)."
    )
    h2_ping_timeout_ms: int = Field(
        default=h2c.DEFAULT_PING_TIMEOUT_MS,
        gt=0,
        description="A PING unanswered this long declares the connection dead: its attempts fail (and are retried on a fresh one).",
    )
    response_header_timeout_ms: int = Field(
        default=30_000,
        gt=0,
        description="A bidirectional attempt whose deployment sends no response headers this long fails (and is retried).",
    )
    max_stream_timeouts_per_connection: int = Field(
        default=h2c.DEFAULT_MAX_STREAM_TIMEOUTS_PER_CONNECTION,
        gt=0,
        description="After this many attempts in a row got no response headers on one HTTP/2 connection, it takes no new attempts.",
    )
    h2_max_closed_streams_per_connection: int = Field(
        default=h2c.DEFAULT_MAX_CLOSED_STREAMS_PER_CONNECTION,
        gt=0,
        description="Closed streams each HTTP/2 connection to a deployment remembers (to answer a late frame on one); the oldest are"
        " forgotten first. About 170 bytes each.",
    )


class ProcessorSettings(BaseModel):
    """How a partition processor applies its log and leads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_apply_batch_records: int = Field(default=512, gt=0, description="Records applied per RocksDB write batch.")
    reannounce_delay_ms: int = Field(
        default=3_000,
        gt=0,
        description="Another node took the epoch while this one still owns the partition: claim it again after this long.",
    )
    timer_window_ms: int = Field(default=60_000, gt=0, description="Timers due within this window are kept in memory.")
    max_outbox_batch_messages: int = Field(default=1024, gt=0, description="Outbox messages delivered per batch.")
    leader_task_restart_initial_backoff_ms: int = Field(
        default=100,
        gt=0,
        description="A leader task (timers, outbox, running check) died: the partition steps down and is claimed again after this long, doubling for each death in a row. Also the first pause before the outbox tries a delivery another partition refused again (doubling).",
    )
    leader_task_restart_max_backoff_ms: int = Field(
        default=10_000,
        gt=0,
        description="Longest wait before claiming a partition again after a leader task died, and between the outbox's tries of one delivery.",
    )
    running_check_interval_ms: int = Field(
        default=10_000,
        gt=0,
        description="How often the leader checks that every running invocation has a live attempt or a recorded end (and fails those that have neither).",
    )


class SnapshotSettings(BaseModel):
    """When the leader of a partition snapshots it, where snapshots go, and whether the log is trimmed below them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repository: str | None = Field(
        default=None,
        description="Where snapshots go: a directory path (file:// optional) or s3://BUCKET/PREFIX; default DATA_DIR/snapshots.",
    )
    interval_records: int = Field(
        default=100_000, gt=0, description="Snapshot a partition once this many log records were applied since its last snapshot."
    )
    interval_ms: int = Field(
        default=600_000, gt=0, description="Snapshot a partition that applied any record this long after its last snapshot."
    )
    check_interval_ms: int = Field(default=1_000, gt=0, description="How often the snapshotter checks which partitions are due.")
    max_retained: int = Field(default=1, ge=1, description="Snapshots kept per partition; the log is trimmed below the oldest kept.")
    trim_log: bool = Field(default=True, description="Delete log records below every partition's oldest kept snapshot.")
    s3_endpoint_url: str | None = Field(default=None, description="Endpoint of an S3-compatible store (default: AWS).")
    s3_region: str | None = Field(default=None, description="Region of the bucket (AWS_REGION otherwise).")
    s3_addressing_style: str = Field(default="path", description="path (S3-compatible servers) or virtual (AWS).")
