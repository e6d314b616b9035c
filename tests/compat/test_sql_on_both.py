"""The same SQL against duro and the REAL Restate server (1.7.12) after the same workload: same tables, columns and Arrow types; equal values where they are neither ids nor times.

Both runtimes get the official Python SDK's test services and the same calls
(completed, failed, running, queued behind a key, scheduled, a workflow waiting
on a promise, a call between services). Then each table of Restate's that duro
offers, and the queries the `restate` CLI sends, are run on both with
`accept: application/vnd.apache.arrow.stream` (schemas) and `application/json`
(values). The real server is started only through
shared/tools/restate-server/restate-server.sh; hold `flock /work/locks/restate.lock`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from ingress.sql_tables import TABLES
from tests.processes import DuroServer, RestateServer, ServiceEndpoint, http, wait_until

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(RestateServer.unavailable_reason() is not None, reason=str(RestateServer.unavailable_reason())),
]

ARROW = "application/vnd.apache.arrow.stream"
CLI_QUERIES = {
    "service status, pending": "SELECT target_service_name, target_handler_name, 'pending' as status, COUNT(1) as num_invocations,"
    " MIN(created_at) as oldest_at, FIRST_VALUE(id ORDER BY created_at ASC) as oldest_invocation FROM sys_invocation_status"
    " WHERE status == 'inboxed' AND target_service_name IN ('Durable') GROUP BY target_service_name, target_handler_name",
    "service status, active": "SELECT target_service_name, target_handler_name, status, COUNT(1) as num_invocations,"
    " MIN(created_at) as oldest_at, FIRST_VALUE(id ORDER BY created_at ASC) as oldest_invocation FROM sys_invocation"
    " WHERE target_service_name IN ('Durable', 'Counter', 'Steps') GROUP BY target_service_name, target_handler_name, status"
    " ORDER BY target_handler_name",
    "locked keys": "SELECT service_name, service_key, COUNT(1) as num_pending FROM sys_inbox WHERE service_name IN ('Durable')"
    " GROUP BY service_name, service_key ORDER BY num_pending DESC",
    "describe": "SELECT inv.id, inv.target, inv.target_service_ty, inv.idempotency_key, inv.status, inv.created_at,"
    " inv.modified_at as state_modified_at, inv.pinned_deployment_id, inv.retry_count as num_retries,"
    " inv.last_failure as last_failure_message, inv.last_failure_related_entry_index as last_failure_entry_index,"
    " inv.last_failure_related_entry_name as last_failure_entry_name, inv.last_failure_related_entry_type as last_failure_entry_ty,"
    " inv.last_attempt_deployment_id, inv.last_attempt_server, inv.next_retry_at, inv.last_start_at, inv.invoked_by_id,"
    " inv.invoked_by_target, inv.trace_id, inv.completion_result, inv.completion_failure,"
    " dp.id IS NOT NULL as pinned_deployment_exists FROM sys_invocation inv"
    " LEFT JOIN sys_deployment dp ON dp.id = inv.pinned_deployment_id ORDER BY inv.created_at DESC, inv.id",
    "count": "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000)",
    "columns": "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'sys_journal'"
    " AND column_name IN ('version', 'entry_json', 'appended_at')",
    "state": "SELECT service_name, service_key, key, value FROM state WHERE service_name = 'Counter'",
}


@dataclass(frozen=True)
class Runtime:
    name: str
    admin: str
    call: Callable[..., tuple[int, dict[str, str], bytes]]

    def query(self, sql: str, accept: str) -> tuple[int, bytes]:
        status, _, body = http("POST", f"{self.admin}/query", {"query": sql}, {"accept": accept})
        return status, body

    def schema(self, sql: str) -> list[tuple[str, str]]:
        status, body = self.query(sql, ARROW)
        assert status == 200, (self.name, sql, body[:500])
        return [(f.name, str(f.type)) for f in pa.ipc.open_stream(body).schema]

    def rows(self, sql: str) -> list[dict]:
        status, body = self.query(sql, "application/json")
        assert status == 200, (self.name, sql, body[:500])
        return list(json.loads(body)["rows"])


def _workload(runtime: Runtime, side_effects: Path) -> None:
    assert runtime.call("/Counter/ada/add", 3)[0] == 200
    assert runtime.call("/Steps/fail_terminal", "boom")[0] == 418
    assert runtime.call("/Steps/call_counter", "cc")[0] == 200
    assert runtime.call("/Durable/k/step_sleep_step/send", 600_000)[0] == 202
    wait_until(lambda: side_effects.exists() and "charge k" in side_effects.read_text(), 30, f"{runtime.name}: Durable/k to hold its key")
    assert runtime.call("/Durable/k/step_sleep_step/send", 1)[0] == 202
    assert runtime.call("/Steps/wait_awakeable/send", "w1")[0] == 202
    assert runtime.call("/Signup/s1/run/send", "a@b")[0] == 202
    assert runtime.call("/Recorder/r/append/send?delay=10m", 5)[0] == 202
    wait_until(
        lambda: len(runtime.rows("SELECT id FROM sys_invocation WHERE status = 'running'")) == 3, 30, f"{runtime.name}: three running"
    )


def _endpoint(directory: Path) -> tuple[ServiceEndpoint, Path]:
    side_effects = directory / "side-effects.log"
    endpoint = ServiceEndpoint(
        "tests.services.official_python:app", directory / "service.log", {"DURO_TEST_SIDE_EFFECTS": str(side_effects)}
    )
    endpoint.start()
    endpoint.wait_ready()
    return endpoint, side_effects


@dataclass(frozen=True)
class Observed:
    schemas: dict[str, list[tuple[str, str]]]
    values: dict[str, list[dict]]


def _observe(runtime: Runtime) -> Observed:
    not_in_restate = ("sys_idempotency", "sys_deadlock")  # a table of older Restate releases, and duro's own
    schemas = {name: runtime.schema(f"SELECT * FROM {name} LIMIT 0") for name in (*TABLES, "sys_invocation") if name not in not_in_restate}
    schemas.update({f"cli: {name}": runtime.schema(sql) for name, sql in CLI_QUERIES.items()})
    values = {
        "invocations": runtime.rows(
            "SELECT target, status, invoked_by, invoked_by_service_name, invoked_by_target, completion_result, completion_failure,"
            " target_service_ty FROM sys_invocation ORDER BY target, status"
        ),
        "attempts": runtime.rows(
            "SELECT target, retry_count, last_attempt_server, pinned_service_protocol_version FROM sys_invocation WHERE status = 'running'"
        ),
        "state": runtime.rows(
            "SELECT service_name, service_key, key, value_utf8, value_length FROM state ORDER BY service_name, service_key"
        ),
        "inbox": runtime.rows("SELECT service_name, service_key, sequence_number IS NOT NULL AS queued FROM sys_inbox"),
        "locked": runtime.rows("SELECT service_name, service_key FROM sys_keyed_service_status ORDER BY service_name, service_key"),
        "promises": runtime.rows("SELECT service_name, service_key, key, completed FROM sys_promise"),
        "services": runtime.rows("SELECT name, revision, public, ty FROM sys_service ORDER BY name"),
        "scheduled": runtime.rows(
            "SELECT target, scheduled_start_at > scheduled_at AS later FROM sys_invocation_status WHERE status = 'scheduled'"
        ),
        "cli status": [
            {k: v for k, v in row.items() if k not in ("oldest_at", "oldest_invocation")}
            for row in runtime.rows(CLI_QUERIES["service status, active"])
        ],
    }
    return Observed(schemas, values)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Observed]]:
    results: dict[str, Observed] = {}
    restate_dir = tmp_path_factory.mktemp("restate")
    endpoint, side_effects = _endpoint(restate_dir)
    server = RestateServer(restate_dir / "run")
    try:
        server.start()
        server.register(endpoint.uri)
        runtime = Runtime("restate", server.admin, server.call)
        _workload(runtime, side_effects)
        results["restate"] = _observe(runtime)
    finally:
        server.stop()
        endpoint.stop()
    duro_dir = tmp_path_factory.mktemp("duro")
    endpoint, side_effects = _endpoint(duro_dir)
    duro = DuroServer(duro_dir / "data", duro_dir / "duro.log")
    duro.start()
    try:
        duro.wait_ready()
        duro.register(endpoint.uri)
        runtime = Runtime("duro", duro.admin, duro.call)
        _workload(runtime, side_effects)
        results["duro"] = _observe(runtime)
    finally:
        duro.stop()
        endpoint.stop()
    yield results


def test_every_table_and_cli_query_has_the_same_columns_and_types(observed: dict[str, Observed]) -> None:
    restate, duro = observed["restate"].schemas, observed["duro"].schemas
    assert set(duro) == set(restate)
    differing = {name: (restate[name], duro[name]) for name in restate if restate[name] != duro[name]}
    assert differing == {}


@pytest.mark.parametrize("what", ["invocations", "attempts", "state", "inbox", "locked", "promises", "services", "scheduled", "cli status"])
def test_values_are_equal_where_they_are_neither_ids_nor_times(observed: dict[str, Observed], what: str) -> None:
    def rows(runtime: str) -> list[str]:  # as a multiset: rows that tie under a query's ORDER BY may come in either order
        return sorted(json.dumps(row, sort_keys=True) for row in observed[runtime].values[what])

    assert rows("duro") == rows("restate")
