"""`POST /query`: the admin API's SQL, run by Apache DataFusion over Arrow tables with Restate's names, answered as Arrow IPC or JSON.

DataFusion is the engine Restate's `/query` runs on, so the `restate` CLI's SQL
(`FIRST_VALUE(... ORDER BY ...)`, `==`, `information_schema`) runs unchanged.
Each query gets a fresh session: the tables it reads are registered with their
rows (the others empty, so `information_schema` lists every table), then the
`sys_invocation` view, then the query itself, planned with DDL, DML and
statements refused (no `CREATE EXTERNAL TABLE`, no `COPY TO`). `run` is
synchronous and meant for a worker thread: it stops at `max_rows` result rows
and raises `QueryTimeout` once past its deadline (checked between batches).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from datafusion import SessionConfig, SessionContext, SQLOptions

from ingress.sql_tables import SYS_INVOCATION_VIEW, TABLES

ARROW_STREAM = "application/vnd.apache.arrow.stream"
JSON = "application/json"


class QueryError(Exception):
    """The SQL could not be planned or run; the message is DataFusion's, naming what is wrong."""


class QueryTimeout(Exception):
    """The query ran past its deadline."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    table: pa.Table
    truncated: bool  # more rows than max_rows matched; the first max_rows are in `table`


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
