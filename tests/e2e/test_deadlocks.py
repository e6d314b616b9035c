"""Deadlock detection with real processes: an object calling itself on its own key is reported, and with fail_deadlocked_calls the call that closed the cycle fails with 508 naming it, which frees the key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import registered_duro
from tests.processes import DuroServer, ServiceEndpoint, http


@pytest.fixture
def duro(tmp_path: Path, official_python_service: ServiceEndpoint) -> Iterator[DuroServer]:
    with registered_duro(tmp_path, official_python_service, {"DURO_INGRESS__FAIL_DEADLOCKED_CALLS": "true"}) as server:
        yield server


def _query(server: DuroServer, sql: str) -> list[dict]:
    status, _, body = http("POST", f"{server.admin}/query", {"query": sql}, {"accept": "application/json"})
    assert status == 200, body
    return list(json.loads(body)["rows"])


def test_a_self_call_fails_with_508_naming_the_cycle_and_the_key_is_free_again(duro: DuroServer) -> None:
    status, headers, body = duro.call("/Deadlock/k/call_self", "root", timeout_s=60)
    assert status == 508, body
    message = json.loads(body)["message"]
    root = headers["x-restate-id"]
    assert message.startswith("deadlock: Deadlock/k/call_self (") and f"({root})" in message, message
    (row,) = _query(duro, "SELECT id, cycle, failed, cycle_ids FROM sys_deadlock")
    assert row["failed"] is True and row["cycle_ids"][0] == root and row["cycle_ids"][-1] == root
    status, _, body = duro.call("/Deadlock/k/echo", "free", timeout_s=30)
    assert (status, json.loads(body)) == (200, "free"), "the key is not blocked"
    status, _, metrics = http("GET", f"{duro.admin}/metrics")
    assert 'duro_deadlocks_detected_total{action="failed"} 1.0' in metrics.decode()
    assert "deadlock on partition" in duro.log_tail(200)
