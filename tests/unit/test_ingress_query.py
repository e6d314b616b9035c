"""Unit tests of `POST /query`'s engine and tables: DataFusion over Restate's tables built from a partition store the state machine wrote.

The queries are the ones the `restate` CLI 1.7 sends (cli/src/clients/datafusion_helpers).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import json
import platform
import threading
import time

import pyarrow as pa
import pytest

from duro.inspect import entry_type_name, partition_tables
from ingress import query
from ingress.query import (
    QueryError,
    QueryThreads,
    QueryTimeout,
    format_duration,
    format_timestamp,
    rows_table,
    run_query,
    to_arrow_ipc,
    to_json,
)
from ingress.sql_tables import PARTITION_TABLES, TABLES, tables_read_by
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType
from tests.unit.test_state_machine import COUNTER_ADD, GREETER, SIGNUP_RUN, Harness, invoke, output
from wal.records import AttemptEvents, AttemptFailed, Failure


def _tables(h: Harness, names: frozenset[str] = PARTITION_TABLES) -> dict[str, pa.Table]:
    return partition_tables([(0, h.store)], names, time.monotonic() + 10)


def _rows(h: Harness, sql: str, max_rows: int = 1000) -> list[dict]:
    result = run_query(sql, _tables(h, tables_read_by(sql)), max_rows, time.monotonic() + 10)
    return json.loads(to_json(result.table))["rows"]


def _workload() -> tuple[Harness, dict[str, str]]:
    """A completed call, a running one holding a key, one inboxed behind it, a backing-off one, state and a promise."""
    h = Harness()
    ids: dict[str, str] = {}
    done = invoke(GREETER, retention_ms=60_000)
    h.apply(done)
    h.send(done.invocation_id, 1, output(b'"hi"'), pb.EndMessage())
    ids["completed"] = done.invocation_id
    holder = invoke(COUNTER_ADD)
    h.apply(holder)
    set_state = pb.SetStateCommandMessage(key=b"count")
    set_state.value.content = b"3"
    h.send(holder.invocation_id, 1, set_state)
    ids["running"] = holder.invocation_id
    queued = invoke(COUNTER_ADD)
    h.now_ms += 5
    h.apply(queued)
    ids["inboxed"] = queued.invocation_id
    failing = invoke(GREETER)
    h.apply(failing)
    h.apply(AttemptFailed(failing.invocation_id, 1, Failure(500, "flaky")))
    ids["backing_off"] = failing.invocation_id
    run = invoke(SIGNUP_RUN)
    h.apply(run)
    h.send(run.invocation_id, 1, pb.GetPromiseCommandMessage(key="clicked", result_completion_id=1))
    ids["workflow"] = run.invocation_id
    return h, ids


def test_every_declared_table_has_restates_columns_and_types() -> None:
    with open("tests/unit/data/restate_sql_schema.json", encoding="utf-8") as source:
        reference = json.load(source)["tables"]
    for name, columns in reference.items():
        if name == "sys_invocation":
            continue  # a view: checked below through the engine
        assert [[f.name, str(f.type)] for f in TABLES[name]] == columns, name
    view = run_query("SELECT * FROM sys_invocation LIMIT 0", {}, 10, time.monotonic() + 10).table.schema
    assert [[f.name, str(f.type)] for f in view] == reference["sys_invocation"]


def test_sys_invocation_has_restates_status_words() -> None:
    h, ids = _workload()
    statuses = {row["id"]: row["status"] for row in _rows(h, "SELECT id, status FROM sys_invocation")}
    assert statuses == {
        ids["completed"]: "completed",
        ids["running"]: "running",
        ids["inboxed"]: "pending",
        ids["backing_off"]: "backing-off",
        ids["workflow"]: "running",
    }
    raw = {row["id"]: row["status"] for row in _rows(h, "SELECT id, status FROM sys_invocation_status")}
    assert raw[ids["inboxed"]] == "inboxed" and raw[ids["backing_off"]] == "invoked" and raw[ids["running"]] == "invoked"


def test_cli_service_status_queries_run_unchanged() -> None:
    h, ids = _workload()
    pending = _rows(
        h,
        "SELECT target_service_name, target_handler_name, 'pending' as status, COUNT(1) as num_invocations,"
        " MIN(created_at) as oldest_at, FIRST_VALUE(id ORDER BY created_at ASC) as oldest_invocation"
        " FROM sys_invocation_status WHERE status == 'inboxed' AND target_service_name IN ('Counter')"
        " GROUP BY target_service_name, target_handler_name",
    )
    assert pending == [
        {
            "target_service_name": "Counter",
            "target_handler_name": "add",
            "status": "pending",
            "num_invocations": 1,
            "oldest_at": format_timestamp(datetime.datetime.fromtimestamp((h.now_ms) / 1000, datetime.UTC)),
            "oldest_invocation": ids["inboxed"],
        }
    ]
    locked = _rows(
        h,
        "SELECT target_service_name as service_name, target_service_key as service_key, status as invocation_status,"
        " first_value(id) as invocation_holding_lock, first_value(last_start_at) as last_start_at, 0 as num_pending,"
        " sum(retry_count) as num_retries FROM sys_invocation WHERE status != 'pending' AND target_service_name IN ('Counter')"
        " GROUP BY target_service_name, target_service_key, status",
    )
    assert [(r["service_key"], r["invocation_status"], r["invocation_holding_lock"], r["num_retries"]) for r in locked] == [
        ("alice", "running", ids["running"], 1)
    ]
    inbox = _rows(h, "SELECT service_name, service_key, COUNT(1) as num_pending FROM sys_inbox GROUP BY service_name, service_key")
    assert inbox == [{"service_name": "Counter", "service_key": "alice", "num_pending": 1}]


def test_cli_describe_query_with_join_and_failure_columns() -> None:
    h, ids = _workload()
    sql = (
        "SELECT inv.id, inv.status, inv.retry_count as num_retries, inv.last_failure as last_failure_message,"
        " inv.last_failure_related_entry_index as last_failure_entry_index, inv.next_retry_at, inv.invoked_by_id,"
        " dp.id IS NOT NULL as pinned_deployment_exists FROM sys_invocation inv"
        f" LEFT JOIN sys_deployment dp ON dp.id = inv.pinned_deployment_id WHERE inv.id in ('{ids['backing_off']}')"
    )
    (row,) = _rows(h, sql)
    assert row["status"] == "backing-off"
    assert row["num_retries"] == 1
    assert row["last_failure_message"] == "[500] flaky"
    assert row["next_retry_at"].endswith("Z")
    assert row["pinned_deployment_exists"] is False


def test_state_journal_promise_and_keyed_status_tables() -> None:
    h, ids = _workload()
    assert _rows(h, "SELECT service_name, service_key, key, value, value_utf8 FROM state") == [
        {"service_name": "Counter", "service_key": "alice", "key": "count", "value": "33", "value_utf8": "3"}
    ]
    journal = _rows(h, f"SELECT index, entry_type, name FROM sys_journal WHERE id = '{ids['running']}' ORDER BY index")
    assert journal == [
        {"index": 0, "entry_type": "Command: Input", "name": ""},
        {"index": 1, "entry_type": "Command: SetState", "name": ""},
    ]
    assert _rows(h, "SELECT service_name, service_key, invocation_id FROM sys_keyed_service_status") == [
        {"service_name": "Counter", "service_key": "alice", "invocation_id": ids["running"]}
    ]
    assert _rows(h, "SELECT service_name, key, completed FROM sys_promise") == [
        {"service_name": "Signup", "key": "clicked", "completed": False}
    ]


def test_information_schema_answers_the_clis_column_checks() -> None:
    sql = (
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'sys_journal'"
        " AND column_name IN ('version', 'entry_json', 'appended_at')"
    )
    assert run_query(sql, {}, 10, time.monotonic() + 10).table.column(0).to_pylist() == [3]


def test_row_limit_cuts_and_says_so() -> None:
    h, _ = _workload()
    result = run_query("SELECT id FROM sys_invocation_status", _tables(h), 2, time.monotonic() + 10)
    assert result.table.num_rows == 2 and result.truncated
    whole = run_query("SELECT id FROM sys_invocation_status", _tables(h), 5, time.monotonic() + 10)
    assert whole.table.num_rows == 5 and not whole.truncated


def test_errors_name_the_problem_and_nothing_is_written() -> None:
    with pytest.raises(QueryError, match="nope"):
        run_query("SELECT * FROM nope", {}, 10, time.monotonic() + 10)
    with pytest.raises(QueryError, match="bogus"):
        run_query("SELECT bogus FROM sys_invocation", {}, 10, time.monotonic() + 10)
    for statement in ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "COPY (SELECT 1) TO '/tmp/x.csv'"):
        with pytest.raises(QueryError, match="not supported"):
            run_query(statement, {}, 10, time.monotonic() + 10)


def test_a_deadline_in_the_past_times_out() -> None:
    h, _ = _workload()
    with pytest.raises(QueryTimeout):
        run_query("SELECT * FROM sys_invocation", _tables(h), 10, time.monotonic() - 1)


def test_arrow_ipc_round_trips_and_json_formats() -> None:
    table = rows_table("sys_deployment", [{"id": "dp_1", "created_at": 1_700_000_000_123, "services": ["A"]}])
    decoded = pa.ipc.open_stream(to_arrow_ipc(table)).read_all()
    assert decoded.equals(table)
    assert json.loads(to_json(table)) == {"rows": [{"id": "dp_1", "created_at": "2023-11-14T22:13:20.123Z", "services": ["A"]}]}
    assert format_duration(datetime.timedelta(days=1)) == "PT86400S"
    assert format_duration(datetime.timedelta(milliseconds=1500)) == "PT1.5S"


def test_entry_type_names_are_restates() -> None:
    assert entry_type_name(MessageType.RUN_COMMAND) == "Command: Run"
    assert entry_type_name(MessageType.GET_EAGER_STATE_COMMAND) == "Command: GetEagerState"
    assert entry_type_name(MessageType.RUN_COMPLETION) == "Notification: Run"
    assert entry_type_name(MessageType.CALL_INVOCATION_ID_COMPLETION) == "Notification: CallInvocationId"
    assert entry_type_name(MessageType.SIGNAL) == "Notification: Signal"


def test_journal_entry_json_is_restates_for_the_commands_the_cli_details() -> None:
    """Expected values are what restate-server 1.7.12 answered for the same commands (sys_journal.entry_json)."""
    h = Harness()
    record = invoke(COUNTER_ADD)
    h.apply(record)
    run = pb.RunCommandMessage(result_completion_id=1, name="charge")
    set_state = pb.SetStateCommandMessage(key=b"status")
    set_state.value.content = b'"charged"'
    sleep = pb.SleepCommandMessage(wake_up_time=1796037596050, result_completion_id=2)
    eager = pb.GetEagerStateCommandMessage(key=b"count")
    eager.void.SetInParent()
    failure = pb.OutputCommandMessage()
    failure.failure.code = 418
    failure.failure.message = "boom"
    h.send(record.invocation_id, 1, run, set_state, sleep, eager, failure)
    rows = _rows(h, f"SELECT index, entry_json FROM sys_journal WHERE id = '{record.invocation_id}' ORDER BY index")
    assert [json.loads(row["entry_json"]) for row in rows[1:]] == [
        {"Command": {"Run": {"completion_id": 1, "name": "charge"}}},
        {"Command": {"SetState": {"key": "status", "value": [34, 99, 104, 97, 114, 103, 101, 100, 34], "name": ""}}},
        {"Command": {"Sleep": {"wake_up_time": 1796037596050, "completion_id": 2, "name": ""}}},
        {"Command": {"GetEagerState": {"key": "count", "result": "Void", "name": ""}}},
        {"Command": {"Output": {"result": {"Failure": {"code": 418, "message": "boom"}}, "name": ""}}},
    ]
    assert json.loads(rows[0]["entry_json"]) == {"Command": {"Input": {"headers": [], "payload": [49], "name": ""}}}


def test_the_last_attempts_server_is_recorded_from_its_first_events() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    h.apply(AttemptEvents(record.invocation_id, 1, (), "dp_1", 6, "restate-sdk-python/1.3.0"))
    assert _rows(h, "SELECT last_attempt_server FROM sys_invocation") == [{"last_attempt_server": "restate-sdk-python/1.3.0"}]


# ---------------------------------------------------------------- query threads


async def test_query_work_runs_on_at_most_max_threads_threads_of_its_own() -> None:
    """However many jobs come, at once or one after another, they run on `max_threads` named threads and no other."""
    threads = QueryThreads(2)
    both_running = threading.Barrier(2, timeout=10)

    def job(wait: bool) -> str:
        if wait:
            both_running.wait()  # two jobs at the same time: two threads
        return threading.current_thread().name

    try:
        names = await asyncio.gather(*(threads.run(job, index < 2) for index in range(40)))
        names += [await threads.run(job, False) for _ in range(20)]
    finally:
        threads.close()
    assert len(set(names)) == 2, names
    assert all(name.startswith("duro-query") for name in names)
    assert threading.current_thread().name not in names


async def test_a_query_job_sees_the_callers_context_and_its_errors_reach_the_caller() -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable")
    variable.set("the caller's")
    threads = QueryThreads(1)

    def fail() -> None:
        raise QueryError("no such column: x")

    try:
        assert await threads.run(variable.get) == "the caller's"
        with pytest.raises(QueryError, match="no such column: x"):
            await threads.run(fail)
    finally:
        threads.close()


async def test_a_query_job_cancelled_before_it_started_never_runs() -> None:
    threads = QueryThreads(1)
    release = threading.Event()
    ran: list[str] = []
    try:
        busy = asyncio.ensure_future(threads.run(release.wait, 10))
        queued = asyncio.ensure_future(threads.run(ran.append, "queued"))
        await asyncio.sleep(0)
        queued.cancel()
        # The cancel reaches the thread pool's future from a loop callback; once the task has ended it has. Releasing
        # the busy thread before that let the pool start the job (a race of the test, seen once in a full run).
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        assert await busy is True
        assert await threads.run(ran.append, "next") is None
    finally:
        threads.close()
    assert ran == ["next"]


async def test_every_query_job_hands_freed_memory_back_after_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """After each job, returned or raised, its thread calls `release_freed_memory` (glibc's malloc_trim)."""
    events: list[str] = []
    monkeypatch.setattr(query, "release_freed_memory", lambda: events.append(f"released on {threading.current_thread().name}"))
    threads = QueryThreads(1)

    def fail() -> None:
        events.append("failed")
        raise QueryTimeout("past its deadline")

    try:
        await threads.run(events.append, "ran")
        with pytest.raises(QueryTimeout):
            await threads.run(fail)
    finally:
        threads.close()
    assert [event.split("_")[0] for event in events] == ["ran", "released on duro-query", "failed", "released on duro-query"]


def test_releasing_freed_memory_calls_glibc_where_there_is_one() -> None:
    query.release_freed_memory()  # must not raise, with or without glibc
    if platform.libc_ver()[0] == "glibc":
        assert query._MALLOC_TRIM is not None
