"""`POST /query`: the admin API's SQL over invocations, deployments and services, answered by SQLite.

For each query the engine loads a snapshot of the rows into an in-memory,
read-only SQLite database with Restate's table names (`sys_invocation_status`,
`sys_invocation`, `sys_deployment`, `sys_service`) and runs the SQL there. The
queries the `restate` CLI sends (filters on id, target, status, counts) are
plain SQL that SQLite runs unchanged. Only JSON answers are offered
(`{"rows": [...]}`); Arrow IPC is not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

InvocationRows = Callable[[], Iterable[dict[str, Any]]]

INVOCATION_COLUMNS = (
    "id", "target", "target_service_name", "target_service_key", "target_handler_name", "target_service_ty",
    "status", "created_at", "modified_at", "scheduled_at", "pinned_deployment_id", "pinned_service_protocol_version",
    "retry_count", "last_failure", "last_failure_error_code", "next_retry_at", "idempotency_key", "journal_length",
    "completion_result", "completion_failure", "completed_at", "invoked_by",
)  # fmt: skip
DEPLOYMENT_COLUMNS = ("id", "ty", "endpoint", "created_at", "min_service_protocol_version", "max_service_protocol_version")
SERVICE_COLUMNS = ("name", "revision", "public", "ty", "deployment_id")


class QueryError(Exception):
    """The SQL could not run; the message is SQLite's, naming what is wrong."""


class QueryEngine:
    def __init__(
        self,
        invocation_rows: InvocationRows,
        deployment_rows: Callable[[], Iterable[dict[str, Any]]],
        service_rows: Callable[[], Iterable[dict[str, Any]]],
        max_rows: int = 10_000,
    ) -> None:
        self._invocation_rows = invocation_rows
        self._deployment_rows = deployment_rows
        self._service_rows = service_rows
        self.max_rows = max_rows

    def run(self, sql: str) -> list[dict[str, Any]]:
        """Rows of `sql` as dicts, at most `max_rows` of them."""
        connection = sqlite3.connect(":memory:")
        try:
            invocations = list(self._invocation_rows())
            for table in ("sys_invocation_status", "sys_invocation"):
                _load(connection, table, INVOCATION_COLUMNS, invocations)
            _load(connection, "sys_deployment", DEPLOYMENT_COLUMNS, self._deployment_rows())
            _load(connection, "sys_service", SERVICE_COLUMNS, self._service_rows())
            connection.execute("PRAGMA query_only = ON")
            try:
                cursor = connection.execute(sql)
            except sqlite3.Error as exc:
                raise QueryError(f"query failed: {exc}") from exc
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=False)) for row in cursor.fetchmany(self.max_rows)]
        finally:
            connection.close()


def _load(connection: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> None:
    connection.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
    placeholders = ", ".join("?" for _ in columns)
    connection.executemany(f"INSERT INTO {table} VALUES ({placeholders})", ([row.get(c) for c in columns] for row in rows))
