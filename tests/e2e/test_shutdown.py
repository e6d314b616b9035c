"""The way out of a real `duro serve`: SIGTERM's graceful phase is capped, a fatal error exits non-zero in bounded time.

Both answer a call still waiting with 503 naming the invocation, so the client
knows to attach later instead of waiting for a reply that cannot come.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import filesystems
from tests.processes import DuroServer, ServiceEndpoint, wait_until

SHUTDOWN_TIMEOUT_MS = 2_000
ATTEMPT_DRAIN_TIMEOUT_MS = 1_000
CLOSE_TIMEOUT_MS = 5_000
EXIT_MARGIN_S = 5.0  # interpreter start-up and tear-down on a busy machine, on top of the node's own bounds


class LongCall:
    """A call of `Steps.wait_awakeable` (nobody resolves the awakeable) waiting in a thread; returns once the handler runs."""

    def __init__(self, server: DuroServer, side_effects: Path) -> None:
        self.result: tuple[int, dict[str, str], bytes] | None = None
        self._thread = threading.Thread(target=self._run, args=(server,), daemon=True)
        self._thread.start()
        wait_until(lambda: side_effects.exists() and "awakeable long-call" in side_effects.read_text(), 30, "the call to run")

    def _run(self, server: DuroServer) -> None:
        self.result = server.call("/Steps/wait_awakeable", "long-call", timeout_s=120)

    def answer(self) -> tuple[int, dict[str, str], dict]:
        self._thread.join(EXIT_MARGIN_S)
        assert self.result is not None, "the waiting call got no answer"
        status, headers, body = self.result
        return status, headers, json.loads(body)


def wait_for_exit(server: DuroServer, bound_s: float) -> tuple[int, float]:
    assert server.process is not None
    started = time.monotonic()
    code = server.process.wait(timeout=bound_s + EXIT_MARGIN_S)
    return code, time.monotonic() - started


def started_node(data_dir: Path, log_path: Path, endpoint: ServiceEndpoint) -> DuroServer:
    env = {
        "DURO_SHUTDOWN__TIMEOUT_MS": str(SHUTDOWN_TIMEOUT_MS),
        "DURO_SHUTDOWN__ATTEMPT_DRAIN_TIMEOUT_MS": str(ATTEMPT_DRAIN_TIMEOUT_MS),
        "DURO_SHUTDOWN__CLOSE_TIMEOUT_MS": str(CLOSE_TIMEOUT_MS),
        "DURO_MIN_FREE_DISK_BYTES": "0",  # the test's disk is smaller than the default threshold
    }
    server = DuroServer(data_dir, log_path, env=env)
    server.start()
    server.wait_ready()
    server.register(endpoint.uri)
    return server


def test_sigterm_with_a_long_call_in_flight_exits_within_the_cap(
    tmp_path: Path, official_python_service: ServiceEndpoint, side_effects: Path
) -> None:
    server = started_node(tmp_path / "data", tmp_path / "duro.log", official_python_service)
    try:
        call = LongCall(server, side_effects)
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGTERM)
        code, elapsed_s = wait_for_exit(server, (SHUTDOWN_TIMEOUT_MS + CLOSE_TIMEOUT_MS) / 1000)
        assert code == 0, server.log_tail()
        print(f"\nSIGTERM with a call waiting: exit 0 after {elapsed_s:.2f} s")
        status, headers, body = call.answer()
        assert status == 503, body
        assert headers["x-restate-id"] in body["message"] and "shutting down" in body["message"]
        assert "drained in" in server.log_path.read_text()
    finally:
        server.stop()


@pytest.mark.skipif(filesystems.unavailable_reason() is not None, reason=str(filesystems.unavailable_reason()))
def test_a_fatal_error_exits_non_zero_within_the_bound(
    tmp_path: Path, official_python_service: ServiceEndpoint, side_effects: Path
) -> None:
    """The data dir's filesystem fails (ext4 remounts read-only on an I/O error): the log cannot write, the node exits 1."""
    with filesystems.loop_ext4(tmp_path, 64) as disk:
        server = started_node(disk.mount_point / "data", tmp_path / "duro.log", official_python_service)
        try:
            call = LongCall(server, side_effects)
            disk.fail()
            with contextlib.suppress(ConnectionError):  # the node may already be on its way out
                status, _, body = server.call("/Counter/fatal/add/send", 1)  # a write, should nothing else write first
                assert status == 503, body
            code, _ = wait_for_exit(server, CLOSE_TIMEOUT_MS / 1000)
            assert code == 1, server.log_tail()
            status, headers, answer = call.answer()
            assert status == 503 and headers["x-restate-id"] in answer["message"], answer
            text = server.log_path.read_text()
            assert "CRITICAL duro.node: fatal: a partition processor died" in text, text
            assert "Read-only file system" in text
        finally:
            server.stop()


def test_a_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "duro", "serve", "--data-dir", str(tmp_path / "data"), "--ingress-port", str(port), "--admin-port", "0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"duro: cannot listen for the ingress API on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("workers", "in_the_way", "purpose"),
    [
        (1, ".", "the data dir"),
        (1, "log", "the embedded log"),
        (1, "state", "the state store (RocksDB)"),
        (2, "workers/1", "worker 1's log, state and snapshots"),
        (2, "workers/0/snapshots", "worker 0's snapshots"),
    ],
)
def test_a_file_where_a_folder_goes_stops_start_up_with_one_line(tmp_path: Path, workers: int, in_the_way: str, purpose: str) -> None:
    data = tmp_path / "data"
    path = data / in_the_way if in_the_way != "." else data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder")
    assert (
        _refusal(data, workers) == f"duro: {path} is a file, where duro keeps a folder ({purpose}); move it away or use another --data-dir"
    )
    assert path.read_text() == "not a folder"  # left as it was


@pytest.mark.parametrize(
    ("workers", "in_the_way", "purpose"),
    [
        (1, "duro.json", "the data dir's partition and worker counts"),
        (1, "registry.json", "the deployment registry"),
        (1, "log/duro-log.json", "the embedded log's partition count"),
        (2, "duro.lock", "the data dir's lock"),
        (2, "workers/1/log/LOCK", "worker 1's embedded log's lock"),
    ],
)
def test_a_folder_where_a_file_goes_stops_start_up_with_one_line(tmp_path: Path, workers: int, in_the_way: str, purpose: str) -> None:
    data = tmp_path / "data"
    path = data / in_the_way
    path.mkdir(parents=True)
    (path / "kept").write_text("left alone")
    assert (
        _refusal(data, workers) == f"duro: {path} is a folder, where duro keeps a file ({purpose}); move it away or use another --data-dir"
    )
    assert (path / "kept").read_text() == "left alone"  # left as it was


def _refusal(data: Path, workers: int) -> str:
    """The one line `duro serve` on `data` exits 1 with, having printed no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "duro", "serve", "--data-dir", str(data), "--workers", str(workers), "--ingress-port", "0", "--admin-port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]
