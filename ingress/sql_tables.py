"""Restate's introspection tables as duro offers them to `POST /query`: each table's Arrow columns and types, and the `sys_invocation` view.

Names, column order and Arrow types are Restate 1.7's (checked against
restate-server 1.7.12 by `tests/unit/test_sql_tables.py` and, live, by
`tests/compat/test_sql_on_both.py`), so the `restate` CLI's SQL and anyone's
saved queries run unchanged. Partition tables are built from the partition
stores of every node; `sys_service` and `sys_deployment` from the registry.
`sys_idempotency` is Restate's table of releases before 1.7 (kept because
operators still query it); `sys_deadlock` is duro's own: calls that closed a
cycle of exclusive invocations waiting on each other. Tables of Restate features duro does not
have (virtual queues, rules, schedulers, user limits) are not offered.
"""

from __future__ import annotations

import re
from typing import Final

import pyarrow as pa

_TEXT = pa.large_string()
_U64 = pa.uint64()
_U32 = pa.uint32()
_BOOL = pa.bool_()
_TIME = pa.timestamp("ms", tz="+00:00")
_DURATION = pa.duration("ms")
_BYTES = pa.large_binary()
_U32_LIST = pa.list_(pa.uint32())
_TEXT_LIST = pa.list_(pa.large_string())


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, data_type, nullable=True) for name, data_type in columns])


TABLES: Final[dict[str, pa.Schema]] = {
    "sys_invocation_status": _schema(
        ("partition_key", _U64), ("id", _TEXT), ("vqueue_id", _TEXT), ("status", _TEXT), ("completion_result", _TEXT),
        ("completion_failure", _TEXT), ("target", _TEXT), ("target_service_name", _TEXT), ("target_service_key", _TEXT),
        ("target_handler_name", _TEXT), ("target_service_ty", _TEXT), ("scope", _TEXT), ("limit_key", _TEXT),
        ("idempotency_key", _TEXT), ("invoked_by", _TEXT), ("invoked_by_id", _TEXT), ("invoked_by_subscription_id", _TEXT),
        ("invoked_by_service_name", _TEXT), ("invoked_by_target", _TEXT), ("restarted_from", _TEXT),
        ("pinned_deployment_id", _TEXT), ("pinned_service_protocol_version", _U32), ("trace_id", _TEXT), ("journal_size", _U32),
        ("journal_commands_size", _U32), ("created_at", _TIME), ("created_using_restate_version", _TEXT), ("modified_at", _TIME),
        ("inboxed_at", _TIME), ("scheduled_at", _TIME), ("scheduled_start_at", _TIME), ("running_at", _TIME),
        ("completed_at", _TIME), ("completion_retention", _DURATION), ("journal_retention", _DURATION),
        ("suspended_waiting_for_completions", _U32_LIST), ("suspended_waiting_for_signals", _U32_LIST),
        ("suspended_waiting_future_json", _TEXT),
    ),
    "sys_invocation_state": _schema(
        ("partition_key", _U64), ("id", _TEXT), ("in_flight", _BOOL), ("retry_count", _U64), ("last_start_at", _TIME),
        ("last_attempt_deployment_id", _TEXT), ("last_attempt_server", _TEXT), ("next_retry_at", _TIME), ("last_failure", _TEXT),
        ("last_failure_error_code", _TEXT), ("last_failure_related_command_index", _U64), ("last_failure_related_command_name", _TEXT),
        ("last_failure_related_command_type", _TEXT), ("last_failure_related_entry_index", _U64),
        ("last_failure_related_entry_name", _TEXT), ("last_failure_related_entry_type", _TEXT), ("last_awaiting_on_future_json", _TEXT),
    ),
    "sys_journal": _schema(
        ("partition_key", _U64), ("id", _TEXT), ("index", _U32), ("entry_type", _TEXT), ("name", _TEXT), ("completed", _BOOL),
        ("invoked_id", _TEXT), ("invoked_target", _TEXT), ("sleep_wakeup_at", _TIME), ("promise_name", _TEXT), ("raw", _BYTES),
        ("raw_length", _U64), ("version", _U32), ("entry_json", _TEXT), ("entry_lite_json", _TEXT), ("appended_at", _TIME),
    ),
    "sys_journal_events": _schema(
        ("partition_key", _U64), ("id", _TEXT), ("after_journal_entry_index", _U32), ("appended_at", _TIME), ("event_type", _TEXT),
        ("event_json", _TEXT),
    ),
    "state": _schema(
        ("partition_key", _U64), ("scope", _TEXT), ("service_name", _TEXT), ("service_key", _TEXT), ("key", _TEXT),
        ("key_length", _U64), ("value_utf8", _TEXT), ("value", _BYTES), ("value_length", _U64),
    ),
    "sys_inbox": _schema(
        ("partition_key", _U64), ("service_name", _TEXT), ("service_key", _TEXT), ("id", _TEXT), ("sequence_number", _U64),
        ("created_at", _TIME),
    ),
    "sys_keyed_service_status": _schema(
        ("partition_key", _U64), ("service_name", _TEXT), ("service_key", _TEXT), ("invocation_id", _TEXT),
    ),
    "sys_locks": _schema(
        ("partition_key", _U64), ("scope", _TEXT), ("lock_name", _TEXT), ("acquired_at", _TIME), ("acquired_by", _TEXT),
    ),
    "sys_promise": _schema(
        ("partition_key", _U64), ("scope", _TEXT), ("service_name", _TEXT), ("service_key", _TEXT), ("key", _TEXT),
        ("completed", _BOOL), ("completion_success_value", _BYTES), ("completion_success_value_utf8", _TEXT),
        ("completion_failure", _TEXT),
    ),
    "sys_idempotency": _schema(
        ("partition_key", _U64), ("service_name", _TEXT), ("service_key", _TEXT), ("service_handler", _TEXT),
        ("idempotency_key", _TEXT), ("invocation_id", _TEXT),
    ),
    "sys_deadlock": _schema(
        ("partition_key", _U64), ("id", _TEXT), ("detected_at", _TIME), ("cycle", _TEXT), ("cycle_ids", _TEXT_LIST),
        ("failed", _BOOL),
    ),
    "sys_service": _schema(("name", _TEXT), ("revision", _U64), ("public", _BOOL), ("ty", _TEXT), ("deployment_id", _TEXT)),
    "sys_deployment": _schema(
        ("id", _TEXT), ("ty", _TEXT), ("endpoint", _TEXT), ("created_at", _TIME), ("min_service_protocol_version", _U32),
        ("max_service_protocol_version", _U32), ("services", _TEXT_LIST),
    ),
}  # fmt: skip

PARTITION_TABLES: Final = frozenset(
    {
        "sys_invocation_status",
        "sys_invocation_state",
        "sys_journal",
        "sys_journal_events",
        "state",
        "sys_inbox",
        "sys_keyed_service_status",
        "sys_locks",
        "sys_promise",
        "sys_idempotency",
        "sys_deadlock",
    }
)
"""Tables whose rows live in the partition stores (every node answers for the partitions it leads)."""

REGISTRY_TABLES: Final = frozenset({"sys_service", "sys_deployment"})

VIEWS: Final[dict[str, tuple[str, ...]]] = {"sys_invocation": ("sys_invocation_status", "sys_invocation_state")}
"""Views and the tables they read."""

# Restate's sys_invocation: the status table joined with the attempt table, and one status word
# for both (an invoked invocation is `running` while an attempt is in flight, `backing-off`
# between failed attempts, `ready` before its first).
SYS_INVOCATION_VIEW: Final = """CREATE VIEW sys_invocation AS SELECT
    s.id, s.vqueue_id, s.target, s.target_service_name, s.target_service_key, s.target_handler_name,
    s.target_service_ty, s.scope, s.limit_key, s.idempotency_key, s.invoked_by, s.invoked_by_service_name,
    s.invoked_by_id, s.invoked_by_subscription_id, s.invoked_by_target, s.restarted_from, s.pinned_deployment_id,
    s.pinned_service_protocol_version, s.trace_id, s.journal_size, s.journal_commands_size, s.created_at,
    s.created_using_restate_version, s.modified_at, s.inboxed_at, s.scheduled_at, s.scheduled_start_at, s.running_at,
    s.completed_at, s.completion_retention, s.journal_retention, s.suspended_waiting_for_completions,
    s.suspended_waiting_for_signals, s.suspended_waiting_future_json,
    a.retry_count, a.last_start_at, a.next_retry_at, a.last_attempt_deployment_id, a.last_attempt_server, a.last_failure,
    a.last_failure_error_code, a.last_failure_related_entry_index, a.last_failure_related_entry_name,
    a.last_failure_related_entry_type, a.last_failure_related_command_index, a.last_failure_related_command_name,
    a.last_failure_related_command_type, a.last_awaiting_on_future_json,
    arrow_cast(CASE
        WHEN s.status = 'inboxed' THEN 'pending'
        WHEN s.status IN ('scheduled', 'completed', 'suspended', 'paused') THEN s.status
        WHEN a.in_flight THEN 'running'
        WHEN s.status = 'invoked' AND a.retry_count > 0 THEN 'backing-off'
        ELSE 'ready'
    END, 'LargeUtf8') AS status,
    s.completion_result, s.completion_failure
FROM sys_invocation_state a RIGHT JOIN sys_invocation_status s ON s.id = a.id"""


def tables_read_by(sql: str) -> frozenset[str]:
    """The tables a query may read: every table or view name that occurs in it as a word (views bring their tables).

    Over-approximating is harmless (an unread table is built for nothing); the
    engine registers every table anyway, empty where not needed, so
    `information_schema` lists them all.
    """
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.lower()))
    names = {name for name in TABLES if name in words}
    for view, sources in VIEWS.items():
        if view in words:
            names.update(sources)
    return frozenset(names)
