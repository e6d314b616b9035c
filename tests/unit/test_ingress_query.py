"""Unit tests of the admin API's SQL engine: the queries the restate CLI sends, on rows from a snapshot."""

from __future__ import annotations

import pytest

from ingress.query import QueryEngine, QueryError

ROWS = [
    {"id": "inv_1a", "target": "Steps/wait_awakeable", "target_service_ty": "service", "status": "suspended"},
    {"id": "inv_1b", "target": "Counter/alice/add", "target_service_ty": "virtual_object", "status": "completed"},
    {
        "id": "inv_1c",
        "target": "Counter/bob/add",
        "target_service_ty": "virtual_object",
        "status": "running",
        "pinned_deployment_id": "dp_1",
    },
]


def engine(max_rows: int = 100) -> QueryEngine:
    return QueryEngine(
        lambda: ROWS, lambda: [{"id": "dp_1", "endpoint": "http://x"}], lambda: [{"name": "Counter", "revision": 1}], max_rows
    )


def test_cli_lookup_by_id_skips_completed() -> None:
    sql = "SELECT id, target FROM sys_invocation_status WHERE id = 'inv_1a' AND status != 'completed' LIMIT 500"
    assert engine().run(sql) == [{"id": "inv_1a", "target": "Steps/wait_awakeable"}]
    sql = "SELECT id, target FROM sys_invocation_status WHERE id = 'inv_1b' AND status != 'completed' LIMIT 500"
    assert engine().run(sql) == []


def test_cli_lookup_by_target_pattern() -> None:
    sql = "SELECT id FROM sys_invocation_status WHERE ((target = 'Counter/add' AND target_service_ty = 'service') OR (target LIKE 'Counter/%/add' AND target_service_ty != 'service'))"
    assert [r["id"] for r in engine().run(sql)] == ["inv_1b", "inv_1c"]


def test_count_by_pinned_deployment_and_other_tables() -> None:
    sql = "SELECT COUNT(1) AS inv_count FROM sys_invocation_status WHERE pinned_deployment_id = 'dp_1' AND status != 'completed'"
    assert engine().run(sql) == [{"inv_count": 1}]
    assert engine().run("SELECT name FROM sys_service") == [{"name": "Counter"}]
    assert engine().run("SELECT endpoint FROM sys_deployment") == [{"endpoint": "http://x"}]


def test_row_limit_and_errors() -> None:
    assert len(engine(max_rows=2).run("SELECT * FROM sys_invocation")) == 2
    with pytest.raises(QueryError, match="no such table"):
        engine().run("SELECT * FROM nope")
    with pytest.raises(QueryError):
        engine().run("DELETE FROM sys_invocation")
