"""Restate's partition tables (`sys_invocation_status`, `sys_journal`, `state`, ...) built as Arrow tables from the partition stores, for `POST /query`.

`partition_tables` reads the committed rows of the given partition stores
(each RocksDB scan sees one consistent snapshot) and turns them into the rows
of Restate's tables, with Restate's status words and formats. It is
synchronous and meant for a worker thread; it checks its deadline as it goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import msgpack
import pyarrow as pa

from ingress.admin import DURO_VERSION
from ingress.query import QueryTimeout, rows_table
from ingress.registry import Registry
from ingress.subscriptions import SUBSCRIPTION_ID_PREFIX
from partition_worker import keys
from partition_worker.state_machine.context import is_queued_state_patch
from partition_worker.state_machine.deadlocks import decode_deadlock_row
from partition_worker.state_machine.promises import Promise
from partition_worker.status import BackingOff, InvocationStatus, Invoked, Phase, Suspended
from partition_worker.store import PartitionStore
from protocol.frames import MessageType, is_command
from protocol.ids import InvocationId
from protocol.journal_json import TargetKind, call_invocation_ids, entry_json
from protocol.routing import partition_key_for_key
from wal.records import Failure, HandlerKind, ServiceType

Row = dict[str, Any]
Stores = Iterable[tuple[int, PartitionStore]]

STATUS_WORDS: Final = {
    Phase.SCHEDULED: "scheduled",
    Phase.INBOXED: "inboxed",
    Phase.INVOKED: "invoked",
    Phase.SUSPENDED: "suspended",
    Phase.BACKING_OFF: "invoked",  # Restate's status table says `invoked`; the attempt table says it is not in flight
    Phase.PAUSED: "paused",
    Phase.COMPLETED: "completed",
}
"""The `status` column of `sys_invocation_status` (the `sys_invocation` view derives running/backing-off/pending from it)."""

SERVICE_TYPE_WORDS: Final = {ServiceType.SERVICE: "service", ServiceType.VIRTUAL_OBJECT: "virtual_object", ServiceType.WORKFLOW: "workflow"}
_DEADLINE_CHECK_EVERY_ROWS = 512


def no_target_kind(service: str, handler: str) -> None:
    """A `TargetKind` that knows no handler (calls then get no `entry_json`)."""
    return None


def partition_tables(
    stores: Stores, names: frozenset[str], deadline: float, target_kind: TargetKind = no_target_kind
) -> dict[str, pa.Table]:
    """The partition tables among `names`, with the rows of every store; QueryTimeout once past `deadline` (monotonic).

    The tables drawn from invocation statuses are built in one pass, each
    status decoded once; every other table scans its own rows. `target_kind`
    tells the kind of a called handler (from the registry), for the JSON of a
    journal's calls (`sys_journal.entry_json`).
    """
    from_statuses = {name: builder for name, builder in _STATUS_BUILDERS.items() if name in names}
    builders = {**_BUILDERS, "sys_journal": lambda store: journal_rows(store, target_kind)}
    scanned = {name: builder for name, builder in builders.items() if name in names}
    rows: dict[str, list[Row]] = {name: [] for name in (*from_statuses, *scanned)}
    checked = 0
    for _, store in stores:
        if from_statuses:
            for invocation_id, partition_key, status in _statuses(store):
                for name, status_builder in from_statuses.items():
                    row = status_builder(invocation_id, partition_key, status)
                    if row is not None:
                        rows[name].append(row)
                checked += 1
                if checked % _DEADLINE_CHECK_EVERY_ROWS == 0 and time.monotonic() > deadline:
                    raise QueryTimeout("the query ran past its timeout while reading the invocations")
        for name, builder in scanned.items():
            for row in builder(store):
                rows[name].append(row)
                checked += 1
                if checked % _DEADLINE_CHECK_EVERY_ROWS == 0 and time.monotonic() > deadline:
                    raise QueryTimeout(f"the query ran past its timeout while reading {name}")
    return {name: rows_table(name, table_rows) for name, table_rows in rows.items()}


# ---------------------------------------------------------------- invocations


def _statuses(store: PartitionStore) -> Iterator[tuple[str, int, InvocationStatus]]:
    for row, raw in store.scan(keys.INVOCATION_PREFIX):
        invocation_id = row[1:].decode()
        yield invocation_id, InvocationId.parse(invocation_id).partition_key, InvocationStatus.decode(raw)


def failure_text(failure: Failure) -> str:
    """How Restate prints an invocation error: `[418] boom`."""
    return f"[{failure.code}] {failure.message}"


def invocation_status_row(invocation_id: str, partition_key: int, status: InvocationStatus) -> Row:
    target = status.target
    outcome = status.outcome
    invoked_by = "ingress"
    invoked_by_id, subscription_id = status.invoked_by_id, None
    if status.restarted_from is not None:
        invoked_by = "restart_as_new"
    elif invoked_by_id is not None and invoked_by_id.startswith(SUBSCRIPTION_ID_PREFIX):
        invoked_by, invoked_by_id, subscription_id = "subscription", None, invoked_by_id
    elif invoked_by_id is not None:
        invoked_by = "service"
    row: Row = {
        "partition_key": partition_key,
        "id": invocation_id,
        "status": STATUS_WORDS[status.phase],
        "target": target.path,
        "target_service_name": target.service,
        "target_service_key": target.key,
        "target_handler_name": target.handler,
        "target_service_ty": SERVICE_TYPE_WORDS[target.service_type],
        "idempotency_key": status.idempotency_key,
        "invoked_by": invoked_by,
        "invoked_by_id": invoked_by_id,
        "invoked_by_subscription_id": subscription_id,
        "invoked_by_service_name": status.invoked_by_target.split("/", 1)[0] if status.invoked_by_target else None,
        "invoked_by_target": status.invoked_by_target,
        "restarted_from": status.restarted_from,
        "pinned_deployment_id": status.deployment_id,
        "pinned_service_protocol_version": status.protocol_version,
        "journal_size": status.journal_length,
        "journal_commands_size": status.command_count,
        "created_at": status.created_at_ms,
        "created_using_restate_version": DURO_VERSION,
        "modified_at": status.modified_at_ms,
        "inboxed_at": status.inboxed_at_ms,
        "scheduled_at": status.created_at_ms if status.execute_at_ms is not None else None,
        "scheduled_start_at": status.execute_at_ms,
        "running_at": status.running_at_ms,
        "completed_at": status.completed_at_ms,
        "completion_retention": status.completion_retention_ms,
        "journal_retention": status.journal_retention_ms,
    }
    if outcome is not None:
        row["completion_result"] = "success" if outcome.failure is None else "failure"
        row["completion_failure"] = failure_text(outcome.failure) if outcome.failure is not None else None
    if isinstance(state := status.state, Suspended):
        row["suspended_waiting_for_completions"] = list(state.waiting_completions)
        row["suspended_waiting_for_signals"] = list(state.waiting_signals)
    return row


def invocation_state_row(invocation_id: str, partition_key: int, status: InvocationStatus) -> Row | None:
    """The attempt side of an invocation (Restate's invoker status): running, or backing off between attempts."""
    state = status.state
    if not isinstance(state, Invoked | BackingOff):
        return None
    in_flight = isinstance(state, Invoked)
    failure = status.last_failure
    return {
        "partition_key": partition_key,
        "id": invocation_id,
        "in_flight": in_flight,
        "retry_count": status.retry_count + 1 if in_flight else status.retry_count,  # attempts since the last stored entry
        "last_start_at": status.last_start_at_ms,
        "last_attempt_deployment_id": status.deployment_id,
        "last_attempt_server": status.last_attempt_server,
        "next_retry_at": status.next_retry_at_ms,
        "last_failure": failure_text(failure) if failure is not None else None,
    }


def idempotency_row(invocation_id: str, partition_key: int, status: InvocationStatus) -> Row | None:
    if status.idempotency_key is None or status.target.is_workflow_run:
        return None
    target = status.target
    return {
        "partition_key": partition_key,
        "service_name": target.service,
        "service_key": target.key,
        "service_handler": target.handler,
        "idempotency_key": status.idempotency_key,
        "invocation_id": invocation_id,
    }


# ---------------------------------------------------------------- journals


def entry_type_name(message_type: int) -> str:
    """Restate's name of a journal entry's type: `Command: Run`, `Notification: Run`, `Notification: Signal`."""
    try:
        name = MessageType(message_type).name
    except ValueError:
        return f"Unknown: {message_type:#06x}"
    if name.endswith("_COMMAND"):
        return "Command: " + _camel(name.removesuffix("_COMMAND"))
    return "Notification: " + _camel(name.removesuffix("_COMPLETION"))


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def journal_rows(store: PartitionStore, target_kind: TargetKind) -> Iterator[Row]:
    """Each journal entry; `entry_json` is Restate's JSON of it (`protocol.journal_json`), calls described with `target_kind`."""
    for invocation_id, partition_key, _ in _statuses(store):
        entries = [tuple(msgpack.unpackb(raw)) for _, raw in store.scan(keys.journal_prefix(invocation_id))]
        call_ids = call_invocation_ids(entries)
        for index, (message_type, payload) in enumerate(entries):
            entry = entry_json(message_type, payload, call_ids, target_kind)
            yield {
                "partition_key": partition_key,
                "id": invocation_id,
                "index": index,
                "entry_type": entry_type_name(message_type),
                "name": _command_name(message_type, entry),
                "raw": payload,
                "raw_length": len(payload),
                "version": 2,
                "entry_json": json.dumps(entry, separators=(",", ":")) if entry is not None else None,
            }


def _command_name(message_type: int, entry: dict[str, Any] | None) -> str | None:
    """A command's name (from its JSON: every command has one); None for notifications and entries that do not decode."""
    if not is_command(message_type) or entry is None:
        return None
    (body,) = entry["Command"].values()
    return str(body["name"])


def registry_target_kind(registry: Registry) -> TargetKind:
    """The kind of a handler as the registry knows it now, in Restate's words (`VirtualObject`, `Shared`, ...)."""

    def kind(service: str, handler: str) -> tuple[str, str | None] | None:
        revision = registry.service(service)
        info = revision.handlers.get(handler) if revision is not None else None
        if revision is None or info is None:
            return None
        handler_kind = info.kind or (HandlerKind.EXCLUSIVE if revision.service_type is ServiceType.VIRTUAL_OBJECT else None)
        return _TARGET_TYPES[revision.service_type], _HANDLER_TYPES.get(handler_kind) if handler_kind is not None else None

    return kind


_TARGET_TYPES: Final = {ServiceType.SERVICE: "Service", ServiceType.VIRTUAL_OBJECT: "VirtualObject", ServiceType.WORKFLOW: "Workflow"}
_HANDLER_TYPES: Final = {HandlerKind.EXCLUSIVE: "Exclusive", HandlerKind.SHARED: "Shared", HandlerKind.WORKFLOW: "Workflow"}


# ---------------------------------------------------------------- keyed tables


def state_rows(store: PartitionStore) -> Iterator[Row]:
    for row, value in store.scan(keys.table_prefix(keys.Table.STATE)):
        service, key, name = keys.parse_scoped_key(row)
        yield {
            "partition_key": partition_key_for_key(key),
            "service_name": service,
            "service_key": key,
            "key": name.decode(errors="replace"),
            "key_length": len(name),
            "value_utf8": value.decode(errors="replace"),
            "value": value,
            "value_length": len(value),
        }


def inbox_rows(store: PartitionStore) -> Iterator[Row]:
    for row, invocation_id in store.scan(keys.table_prefix(keys.Table.INBOX)):
        if is_queued_state_patch(invocation_id):
            continue  # a state patch waiting for the key, not an invocation
        service, key, seq = keys.parse_scoped_key(row)
        yield {
            "partition_key": partition_key_for_key(key),
            "service_name": service,
            "service_key": key,
            "id": invocation_id.decode(),
            "sequence_number": keys.decode_u64(seq),
        }


def keyed_service_status_rows(store: PartitionStore) -> Iterator[Row]:
    for row, holder in store.scan(keys.table_prefix(keys.Table.LOCK)):
        service, key, _ = keys.parse_scoped_key(row)
        yield {"partition_key": partition_key_for_key(key), "service_name": service, "service_key": key, "invocation_id": holder.decode()}


def promise_rows(store: PartitionStore) -> Iterator[Row]:
    for row, raw in store.scan(keys.table_prefix(keys.Table.PROMISE)):
        service, key, name = keys.parse_scoped_key(row)
        outcome = Promise.load(raw).outcome
        result: Row = {
            "partition_key": partition_key_for_key(key),
            "service_name": service,
            "service_key": key,
            "key": name.decode(errors="replace"),
            "completed": outcome is not None,
        }
        if outcome is not None and outcome.failure is None:
            value = outcome.value or b""
            result["completion_success_value"] = value
            result["completion_success_value_utf8"] = value.decode(errors="replace")
        elif outcome is not None and outcome.failure is not None:
            result["completion_failure"] = failure_text(outcome.failure)
        yield result


def deadlock_rows(store: PartitionStore) -> Iterator[Row]:
    for row, raw in store.scan(keys.table_prefix(keys.Table.DEADLOCK)):
        invocation_id = row[1:].decode()
        detected_at_ms, text, cycle, failed = decode_deadlock_row(raw)
        yield {
            "partition_key": InvocationId.parse(invocation_id).partition_key,
            "id": invocation_id,
            "detected_at": detected_at_ms,
            "cycle": text,
            "cycle_ids": cycle,
            "failed": failed,
        }


def _no_rows(store: PartitionStore) -> Iterator[Row]:
    return iter(())


_STATUS_BUILDERS: Final[dict[str, Callable[[str, int, InvocationStatus], Row | None]]] = {
    "sys_invocation_status": invocation_status_row,
    "sys_invocation_state": invocation_state_row,
    "sys_idempotency": idempotency_row,
}
"""Tables with (at most) one row per invocation, built from its status."""

_BUILDERS: Final[dict[str, Callable[[PartitionStore], Iterator[Row]]]] = {
    "sys_journal": lambda store: journal_rows(store, no_target_kind),  # partition_tables passes the registry's kinds
    "sys_journal_events": _no_rows,  # duro records no journal events (Restate's transient-error and pause events)
    "sys_locks": _no_rows,  # Restate's virtual-queue locks; duro's key locks are in sys_keyed_service_status
    "state": state_rows,
    "sys_inbox": inbox_rows,
    "sys_keyed_service_status": keyed_service_status_rows,
    "sys_promise": promise_rows,
    "sys_deadlock": deadlock_rows,
}
