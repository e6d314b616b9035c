"""Retry policies as Restate applies them, with real processes: a handler's declared policy (3 attempts, then kill) and Restate's default (500 ms, doubling).

The endpoint records the wall-clock time of every attempt; the gaps must be at
least what the policy says (a loaded machine makes them longer, never shorter).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import registered_duro
from tests.processes import DuroServer, ServiceEndpoint, http, wait_until


@pytest.fixture
def duro(tmp_path: Path, official_python_service: ServiceEndpoint) -> Iterator[DuroServer]:
    with registered_duro(tmp_path, official_python_service, None) as server:
        yield server


def _attempt_times(side_effects: Path, name: str) -> list[int]:
    if not side_effects.exists():
        return []
    return [int(line.split()[2]) for line in side_effects.read_text().splitlines() if line.startswith(f"attempt {name} ")]


def test_declared_policy_kills_after_exactly_three_attempts_with_growing_gaps(duro: DuroServer, side_effects: Path) -> None:
    status, _, body = duro.call("/Retries/three_then_kill", "k3", timeout_s=60)
    assert status == 500 or status >= 400, body
    times = _attempt_times(side_effects, "k3")
    assert len(times) == 3, f"attempts at {times}"
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= 200 and gaps[1] >= 400, f"gaps {gaps} ms; the policy says 200 ms then 400 ms"
    rows = http(
        "POST", f"{duro.admin}/query", {"query": "SELECT status, completion_failure FROM sys_invocation WHERE target = 'Retries/three_then_kill'"},
        {"accept": "application/json"},
    )[2]  # fmt: skip
    (row,) = json.loads(rows)["rows"]
    assert row["status"] == "completed" and "attempt of k3 fails" in row["completion_failure"]


def test_default_policy_is_restates_and_the_admin_api_shows_it(duro: DuroServer, side_effects: Path) -> None:
    status, _, body = http("GET", f"{duro.admin}/services/Retries")
    assert status == 200, body
    policy = json.loads(body)["retry_policy"]
    assert policy == {
        "initial_interval": "500ms",
        "exponentiation_factor": 2.0,
        "max_attempts": 70,
        "max_interval": "1m",
        "on_max_attempts": "Pause",
    }
    status, _, body = duro.call("/Retries/default_policy/send", "dflt")
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]
    wait_until(lambda: len(_attempt_times(side_effects, "dflt")) >= 3, 30, "three attempts of the default policy")
    first, second, third = _attempt_times(side_effects, "dflt")[:3]
    assert second - first >= 500 and third - second >= 1000, f"gaps {second - first} and {third - second} ms"
    assert http("PATCH", f"{duro.admin}/invocations/{invocation_id}/kill")[0] == 200
