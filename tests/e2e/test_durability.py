"""Crash tests: kill -9 `duro serve` and start it again on the same data dir; nothing acknowledged is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from benchmarks.endpoint import TYPESCRIPT_ENDPOINT, EndpointProcess
from tests.processes import DuroServer, ServiceEndpoint, http, wait_until


def side_effect_lines(tmp_path: Path, prefix: str) -> list[str]:
    path = tmp_path / "side-effects.log"
    return [line for line in path.read_text().splitlines() if line.startswith(prefix)] if path.exists() else []


def restart(server: DuroServer, tmp_path: Path) -> DuroServer:
    again = DuroServer(server.data_dir, tmp_path / "duro-2.log")
    again.start()
    again.wait_ready()
    return again


def test_kill9_while_sleeping_after_a_journaled_run(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log")
    server.start()
    server.wait_ready()
    server.register(official_python_service.uri)
    key = f"crash-{uuid.uuid4().hex[:6]}"
    status, _, body = server.call(f"/Durable/{key}/step_sleep_step/send", 2500)
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]
    wait_until(lambda: side_effect_lines(tmp_path, f"charge {key}"), 15, "the side effect to run")
    wait_until(lambda: json.loads(server.call(f"/Durable/{key}/status")[2]) == "charged", 15, "the state to be written")
    server.kill9()
    again = restart(server, tmp_path)
    try:
        status, _, body = http("GET", f"{again.ingress}/restate/invocation/{invocation_id}/attach", timeout_s=30)
        assert (status, json.loads(body)) == (200, "charged then slept")
        assert side_effect_lines(tmp_path, f"charge {key}") == [f"charge {key}"], "the journaled side effect ran once"
        assert json.loads(again.call(f"/Durable/{key}/status")[2]) == "charged"
    finally:
        again.stop()


def test_acknowledged_sends_survive_kill9(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    acknowledged_sends_to_one_key_survive_kill9(tmp_path, official_python_service.uri)


@pytest.mark.skipif(not TYPESCRIPT_ENDPOINT.exists(), reason="the TypeScript endpoint is built by scripts/setup.d/20-typescript.sh")
def test_acknowledged_sends_to_a_hot_key_survive_kill9_on_the_typescript_endpoint(tmp_path: Path) -> None:
    """The TypeScript SDK sends `Counter.add`'s state read before the rest, which the invoker holds (max_append_hold_ms): a kill -9
    while the key's queue drains must still count every acknowledged add exactly once."""
    endpoint = EndpointProcess("typescript", tmp_path / "endpoint.log")
    endpoint.start()
    try:
        acknowledged_sends_to_one_key_survive_kill9(tmp_path, endpoint.uri)
    finally:
        endpoint.stop()


def acknowledged_sends_to_one_key_survive_kill9(tmp_path: Path, endpoint_uri: str) -> None:
    """40 sends to one Counter key, kill -9 while they run, restart: the counter is exactly 40 and the next add answers 41."""
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log")
    server.start()
    server.wait_ready()
    server.register(endpoint_uri)
    key = f"acked-{uuid.uuid4().hex[:6]}"
    accepted = 0
    for _i in range(40):
        status, _, _ = server.call(f"/Counter/{key}/add/send", 1)
        assert status == 202
        accepted += 1
    server.kill9()
    again = restart(server, tmp_path)
    try:
        wait_until(lambda: json.loads(again.call(f"/Counter/{key}/get")[2]) == accepted, 30, f"the counter to reach {accepted}")
        # One more add queues behind every add already in the log (one key runs one at a time, in log order),
        # so a replayed add that ran twice would show in its answer, without waiting for time to pass.
        status, _, body = again.call(f"/Counter/{key}/add", 1)
        assert (status, json.loads(body)) == (200, accepted + 1), "no add ran twice"
    finally:
        again.stop()


def test_second_node_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log")
    server.start()
    server.wait_ready()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "duro", "serve", "--data-dir", str(tmp_path / "data"), "--partitions", "4", "--ingress-port", "0", "--admin-port", "0"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode != 0
        assert "in use" in second.stderr, second.stderr
    finally:
        server.stop()


def test_partition_count_is_fixed_at_creation(tmp_path: Path) -> None:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=4)
    server.start()
    server.wait_ready()
    server.stop()
    second = subprocess.run(
        [sys.executable, "-m", "duro", "serve", "--data-dir", str(tmp_path / "data"), "--partitions", "8", "--ingress-port", "0", "--admin-port", "0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode == 1
    assert "--partitions 4, not 8" in second.stderr, second.stderr
