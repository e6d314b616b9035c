"""Prometheus metrics of the partition worker: invocations, attempts, partitions (offsets, lag, leadership), timers, inboxes, RocksDB.

Names carry their unit (`_seconds`, `_bytes`, `_records`) and are declared
here once. They are set at the edges only (the invoker, the processor loop, the
gauge sampler), never inside the state machine, which stays pure.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from wal.hot_metrics import CounterSeries, HistogramSeries, HotCounter, HotGauge, HotHistogram

INVOCATIONS_TOTAL = "duro_invocations_total"
INVOKER_ATTEMPTS_TOTAL = "duro_invoker_attempts_total"
INVOKER_RETRIES_TOTAL = "duro_invoker_retries_total"
INVOKER_INFLIGHT_ATTEMPTS = "duro_invoker_inflight_attempts"
INVOKER_ATTEMPT_DURATION_SECONDS = "duro_invoker_attempt_duration_seconds"
PARTITION_APPLIED_OFFSET = "duro_partition_applied_offset"
PARTITION_APPLY_LAG_RECORDS = "duro_partition_apply_lag_records"
PARTITION_LEADER_EPOCH = "duro_partition_leader_epoch"
PARTITION_LEADER_CHANGES_TOTAL = "duro_partition_leader_changes_total"
PARTITION_IS_LEADER = "duro_partition_is_leader"
PARTITION_SNAPSHOT_AGE_SECONDS = "duro_partition_snapshot_age_seconds"
TIMERS_PENDING = "duro_timers_pending"
INBOX_LENGTH = "duro_inbox_length"
ROCKSDB_SIZE_BYTES = "duro_rocksdb_size_bytes"
PARTITION_RUNNING_WITHOUT_ATTEMPT_TOTAL = "duro_partition_running_without_attempt_total"
PARTITION_LEADER_TASK_FAILURES_TOTAL = "duro_partition_leader_task_failures_total"
DEADLOCKS_DETECTED_TOTAL = "duro_deadlocks_detected_total"

_ATTEMPT_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# Outcomes of one attempt, as `duro_invoker_attempts_total` labels them.
COMPLETED = "completed"  # the SDK sent End: the invocation has its output
SUSPENDED = "suspended"  # the SDK sent Suspension: it waits for a notification
ERROR = "error"  # the SDK sent Error: the state machine retries
FAILED = "failed"  # transport or protocol failure, or a non-200 answer: the state machine retries
ABORTED = "aborted"  # duro stopped it (step-down, drain, superseded, abort timeout)

invocations = HotCounter(
    INVOCATIONS_TOTAL,
    "Invocations that ended with an output, by service, handler and status (succeeded, failed), counted by the leader that ran the last attempt.",
    ["service", "handler", "status"],
)
attempts = HotCounter(
    INVOKER_ATTEMPTS_TOTAL,
    "Attempts that ended, by service, handler and outcome (completed, suspended, error, failed, aborted).",
    ["service", "handler", "outcome"],
)
retries = HotCounter(
    INVOKER_RETRIES_TOTAL,
    "Attempts started after a failed attempt of the same invocation (a retry), by service and handler.",
    ["service", "handler"],
)
inflight_attempts = HotGauge(INVOKER_INFLIGHT_ATTEMPTS, "Attempts running on this node now.")
attempt_duration = HotHistogram(
    INVOKER_ATTEMPT_DURATION_SECONDS,
    "Time from opening an attempt's request to its end, by service, handler and outcome.",
    ["service", "handler", "outcome"],
    _ATTEMPT_BUCKETS_SECONDS,
)
applied_offset = Gauge(PARTITION_APPLIED_OFFSET, "Log offset of the last record this node applied, by partition.", ["partition"])
apply_lag = Gauge(
    PARTITION_APPLY_LAG_RECORDS,
    "Records in the log that this node has not applied yet, by partition it runs (sampled every metrics_sample_interval_ms).",
    ["partition"],
)
leader_epoch = Gauge(PARTITION_LEADER_EPOCH, "Leader epoch last applied, by partition this node runs.", ["partition"])
leader_changes = Counter(
    PARTITION_LEADER_CHANGES_TOTAL, "Leader announcements applied by this node (a new epoch took effect), by partition.", ["partition"]
)
is_leader = Gauge(PARTITION_IS_LEADER, "1 while this node leads the partition, else 0.", ["partition"])
snapshot_age = Gauge(
    PARTITION_SNAPSHOT_AGE_SECONDS,
    "Age of the partition's newest snapshot (set once snapshots exist: `observe_snapshot`).",
    ["partition"],
)
timers_pending = Gauge(
    TIMERS_PENDING, "Timers armed and not yet fired, by partition this node runs (sampled from counts kept by apply).", ["partition"]
)
inbox_length = Gauge(
    INBOX_LENGTH,
    "Entries waiting in virtual-object and workflow inboxes (queued invocations and state edits), by partition this node runs and"
    " service (sampled from counts kept by apply).",
    ["partition", "service"],
)
rocksdb_size = Gauge(ROCKSDB_SIZE_BYTES, "Size on disk of this node's RocksDB directory (sampled).")
leader_task_failures = Counter(
    PARTITION_LEADER_TASK_FAILURES_TOTAL,
    "Leader tasks (timers, outbox, running check) that died; the partition stepped down and was claimed again, by partition and task.",
    ["partition", "task"],
)
running_without_attempt = Counter(
    PARTITION_RUNNING_WITHOUT_ATTEMPT_TOTAL,
    "Invocations the leader found running with neither a live attempt nor a recorded end (an invariant violation; each is"
    " failed so that it retries), by partition. Should stay 0.",
    ["partition"],
)


deadlocks_detected = Counter(
    DEADLOCKS_DETECTED_TOTAL,
    "Calls that closed a cycle of exclusive invocations waiting on each other, by action (reported, or failed with 508"
    " when fail_deadlocked_calls is set), counted by the partition's leader.",
    ["action"],
)


_attempt_series: dict[tuple[str, str, str], tuple[CounterSeries, HistogramSeries]] = {}
_invocation_series: dict[tuple[str, str, bool], CounterSeries] = {}


def attempt_series(service: str, handler: str, outcome: str) -> tuple[CounterSeries, HistogramSeries]:
    """`attempts` and `attempt_duration` for these labels, bound once (every attempt ends here)."""
    series = _attempt_series.get((service, handler, outcome))
    if series is None:
        series = _attempt_series[(service, handler, outcome)] = (
            attempts.labels(service, handler, outcome),
            attempt_duration.labels(service, handler, outcome),
        )
    return series


def invocation_series(service: str, handler: str, failed: bool) -> CounterSeries:
    """`invocations` for these labels (status failed or succeeded), bound once."""
    series = _invocation_series.get((service, handler, failed))
    if series is None:
        series = _invocation_series[(service, handler, failed)] = invocations.labels(service, handler, "failed" if failed else "succeeded")
    return series


def observe_snapshot(partition: int, age_seconds: float) -> None:
    """The hook for snapshots: call whenever a partition's newest snapshot changes or is re-checked."""
    snapshot_age.labels(str(partition)).set(age_seconds)


def forget_partition(partition: int) -> None:
    """Drop the per-partition series of a partition this node no longer runs, so they do not freeze at stale values."""
    label = str(partition)
    for gauge in (applied_offset, apply_lag, leader_epoch, timers_pending, is_leader):
        try:
            gauge.remove(label)
        except KeyError:
            pass
