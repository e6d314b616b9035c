"""Rows describing the invocations of the partitions this node runs, in Restate's `sys_invocation_status` shape, for `POST /query`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from partition_worker import keys
from partition_worker.status import InvocationStatus, Phase
from partition_worker.worker import PartitionWorker
from wal.records import ServiceType

STATUS_NAMES = {
    Phase.SCHEDULED: "scheduled",
    Phase.INBOXED: "pending",
    Phase.INVOKED: "running",
    Phase.SUSPENDED: "suspended",
    Phase.BACKING_OFF: "backing-off",
    Phase.PAUSED: "paused",
    Phase.COMPLETED: "completed",
}
SERVICE_TYPE_NAMES = {ServiceType.SERVICE: "service", ServiceType.VIRTUAL_OBJECT: "virtual_object", ServiceType.WORKFLOW: "workflow"}


def invocation_rows(worker: PartitionWorker) -> Iterator[dict[str, Any]]:
    for processor in list(worker.processors.values()):
        for row, raw in processor.store.scan(keys.INVOCATION_PREFIX):
            yield _row(row[1:].decode(), InvocationStatus.decode(raw))


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row(invocation_id: str, status: InvocationStatus) -> dict[str, Any]:
    target = status.target
    path = f"{target.service}/{target.key}/{target.handler}" if target.key is not None else f"{target.service}/{target.handler}"
    outcome = status.outcome
    failure = status.last_failure
    return {
        "id": invocation_id,
        "target": path,
        "target_service_name": target.service,
        "target_service_key": target.key,
        "target_handler_name": target.handler,
        "target_service_ty": SERVICE_TYPE_NAMES[target.service_type],
        "status": STATUS_NAMES[status.phase],
        "created_at": _iso(status.created_at_ms),
        "modified_at": _iso(status.modified_at_ms),
        "scheduled_at": _iso(status.execute_at_ms),
        "pinned_deployment_id": status.deployment_id,
        "pinned_service_protocol_version": status.protocol_version,
        "retry_count": status.retry_count,
        "last_failure": failure.message if failure else None,
        "last_failure_error_code": str(failure.code) if failure else None,
        "next_retry_at": _iso(status.next_retry_at_ms),
        "idempotency_key": status.idempotency_key,
        "journal_length": status.journal_length,
        "completion_result": None if outcome is None else ("success" if outcome.failure is None else "failure"),
        "completion_failure": outcome.failure.message if outcome is not None and outcome.failure is not None else None,
        "completed_at": _iso(status.completed_at_ms),
        "invoked_by": "ingress",
    }
