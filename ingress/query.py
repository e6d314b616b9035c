"""`POST /query`: the admin API's SQL, run by Apache DataFusion over Arrow tables with Restate's names, answered as Arrow IPC or JSON.

DataFusion is the engine Restate's `/query` runs on, so the `restate` CLI's SQL
(`FIRST_VALUE(... ORDER BY ...)`, `==`, `information_schema`) runs unchanged.
Each query gets a fresh session: the tables it reads are registered with their
rows (the others empty, so `information_schema` lists every table), then the
`sys_invocation` view, then the query itself, planned with DDL, DML and
statements refused (no `CREATE EXTERNAL TABLE`, no `COPY TO`). `run_query` is
synchronous and meant for one of the node's `QueryThreads`: it stops at
`max_rows` result rows and raises `QueryTimeout` once past its deadline
(checked between batches).
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import datetime
import functools
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
from datafusion import SessionConfig, SessionContext, SQLOptions

from ingress.sql_tables import SYS_INVOCATION_VIEW, TABLES

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"
T = TypeVar("T")


class QueryError(Exception):
    """The SQL could not be planned or run; the message is DataFusion's, naming what is wrong."""


class QueryTimeout(Exception):
    """The query ran past its deadline."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    table: pa.Table
    truncated: bool  # more rows than max_rows matched; the first max_rows are in `table`


class QueryThreads:
    """The node's threads for query work: reading partition tables and running SQL, `max_threads` of them, started as needed.

    A query's memory comes from allocators that keep what a thread freed for
    that thread's next use (DataFusion's mimalloc, glibc's per-thread arenas),
    so every thread that ever ran a query holds about the largest query it ran.
    On asyncio's shared executor (min(32, cores + 4) threads, also running log
    reads and snapshots) that is how the soak's RSS kept rising; here at most
    `max_threads` threads (`max_concurrent_queries`) ever run one, and after
    each job the thread hands the C heap's free pages back to the system
    (`malloc_trim`, where the C library has it). Work waits for a free thread
    in submission order; a job cancelled before it started never runs.
    """

    def __init__(self, max_threads: int) -> None:
        assert max_threads > 0, "at least one query thread"
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="duro-query")

    async def run(self, job: Callable[..., T], *args: Any) -> T:
        """`job(*args)` on a query thread, in a copy of the caller's context (as `asyncio.to_thread`).

        Cancelling the await cancels a job that has not started; a running one finishes.
        """
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(context.run, _then_release_memory, job, *args)
        )

    def close(self) -> None:
        """Start no more jobs and drop the queued ones; a running job ends on its own (each has a deadline)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _then_release_memory(job: Callable[..., T], *args: Any) -> T:
    """`job(*args)`, then the C heap's free pages go back to the system, whether the job returned or raised."""
    try:
        return job(*args)
    finally:
        release_freed_memory()


def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Return the free pages of every glibc malloc arena to the system (`malloc_trim(0)`); a no-op without glibc."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


_USER_SQL = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)


def run_query(sql: str, tables: Mapping[str, pa.Table], max_rows: int, deadline: float) -> QueryResult:
    """Run `sql` over `tables` (missing ones are empty); at most `max_rows` rows; QueryTimeout past `deadline` (monotonic)."""
    context = SessionContext(SessionConfig().with_information_schema(True).with_default_catalog_and_schema("datafusion", "public"))
    for name, schema in TABLES.items():
        table = tables.get(name)
        if table is None:
            table = schema.empty_table()
        assert table.schema.equals(schema), f"rows of {name} do not have the table's schema"
        context.register_record_batches(name, [table.to_batches() or _empty_batches(schema)])
    context.sql(SYS_INVOCATION_VIEW)
    try:
        frame = context.sql_with_options(sql, _USER_SQL)
        stream = frame.execute_stream()
        batches: list[pa.RecordBatch] = []
        rows = 0
        truncated = False
        for batch in stream:
            if time.monotonic() > deadline:
                raise QueryTimeout("the query ran past its timeout")
            record_batch = batch.to_pyarrow()
            if rows + record_batch.num_rows > max_rows:
                batches.append(record_batch.slice(0, max_rows - rows))
                truncated = True
                break
            batches.append(record_batch)
            rows += record_batch.num_rows
        schema = batches[0].schema if batches else frame.schema()
    except (ValueError, RuntimeError, TypeError) as exc:  # DataFusion reports planning and execution errors as these
        raise QueryError(str(exc)) from None
    return QueryResult(pa.Table.from_batches(batches, schema=schema), truncated)


def _empty_batches(schema: pa.Schema) -> list[pa.RecordBatch]:
    return [pa.RecordBatch.from_pylist([], schema=schema)]


# ---------------------------------------------------------------- answers


def to_arrow_ipc(table: pa.Table) -> bytes:
    """The result as an Arrow IPC stream (schema, then the batches)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def to_json(table: pa.Table) -> bytes:
    """`{"rows": [...]}` as Restate writes it: nulls left out, times RFC 3339 in UTC, durations ISO 8601, bytes as hex."""
    rows = [{name: _json_value(value) for name, value in row.items() if value is not None} for row in table.to_pylist()]
    return json.dumps({"rows": rows}, separators=(",", ":")).encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return format_timestamp(value)
    if isinstance(value, datetime.timedelta):
        return format_duration(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


def format_timestamp(value: datetime.datetime) -> str:
    """`2026-11-30T11:09:57.037Z`; whole seconds without a fraction."""
    utc = value.astimezone(datetime.UTC) if value.tzinfo is not None else value
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    millis = utc.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def format_duration(value: datetime.timedelta) -> str:
    """ISO 8601 in seconds: `PT86400S`, `PT0.5S`."""
    total_ms = value // datetime.timedelta(milliseconds=1)
    seconds, millis = divmod(abs(total_ms), 1000)
    sign = "-" if total_ms < 0 else ""
    if millis:
        return f"{sign}PT{seconds}.{millis:03d}".rstrip("0") + "S"
    return f"{sign}PT{seconds}S"


def rows_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts by column name; missing columns are null; times as ms since the epoch) as table `name`."""
    return pa.Table.from_pylist(rows, schema=TABLES[name])
