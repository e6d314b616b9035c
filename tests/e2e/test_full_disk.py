"""A full disk degrades `duro serve`, never stops it: new work gets 507, what needs no write goes on, space freed means service again.

The data dir lives on a tmpfs of 64 MiB (a real filesystem that fills up); a
filler file takes the space while clients keep sending. Every send that was
acknowledged (202) is counted once after the disk has room again.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import filesystems
from tests.processes import DuroServer, ServiceEndpoint, http, wait_until

pytestmark = pytest.mark.skipif(filesystems.unavailable_reason() is not None, reason=str(filesystems.unavailable_reason()))

DISK_MIB = 64
MIN_FREE_BYTES = 16 << 20
CHECK_INTERVAL_MS = 100
RECOVERY_TIMEOUT_S = 60


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with filesystems.tmpfs(tmp_path / "disk", DISK_MIB) as mount_point:
        yield mount_point


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


class Filler:
    """A file that takes the disk's space, and gives it back."""

    def __init__(self, disk: Path) -> None:
        self.path = disk / "filler"
        self._file = open(self.path, "wb")  # noqa: SIM115 - held open until release()

    def fill_until_free(self, bytes_left: int) -> None:
        while free_bytes(self.path.parent) > bytes_left + (1 << 20):
            self._file.write(bytes(1 << 20))
            self._file.flush()

    def fill_up(self) -> None:
        with pytest.raises(OSError, match="No space left on device"):
            while True:
                self._file.write(bytes(64 * 1024))
                self._file.flush()

    def release(self) -> None:
        self._file.close()
        self.path.unlink()


class Senders:
    """Four clients adding 1 to their own counter until stopped; they count acknowledged sends and every status seen."""

    def __init__(self, server: DuroServer) -> None:
        self.acknowledged: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.bodies: dict[int, dict] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(server, f"full-{i}"), daemon=True) for i in range(4)]
        for thread in self._threads:
            thread.start()

    def _send(self, server: DuroServer, key: str) -> None:
        while not self._stop.is_set():
            status, _, body = server.call(f"/Counter/{key}/add/send", 1, timeout_s=30)
            self.statuses[status] += 1
            self.bodies.setdefault(status, json.loads(body) if body else {})
            if status == 202:
                self.acknowledged[key] += 1

    def wait_for(self, status: int, count: int) -> None:
        wait_until(lambda: self.statuses[status] >= count, 30, f"{count} answers {status}; seen {dict(self.statuses)}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def started_node(data_dir: Path, log_path: Path, endpoint: ServiceEndpoint, min_free_bytes: int) -> DuroServer:
    env = {"DURO_MIN_FREE_DISK_BYTES": str(min_free_bytes), "DURO_DISK_CHECK_INTERVAL_MS": str(CHECK_INTERVAL_MS)}
    server = DuroServer(data_dir, log_path, env=env)
    server.start()
    server.wait_ready()
    server.register(endpoint.uri)
    return server


def assert_every_acknowledged_send_counted_once(server: DuroServer, senders: Senders) -> None:
    assert senders.acknowledged, "some sends were acknowledged"
    for key, count in senders.acknowledged.items():
        wait_until(lambda key=key, count=count: json.loads(server.call(f"/Counter/{key}/get")[2]) == count, 60, f"{key} to reach {count}")


def test_below_the_threshold_new_work_gets_507_and_reads_and_attaches_go_on(
    tmp_path: Path, disk: Path, official_python_service: ServiceEndpoint
) -> None:
    server = started_node(disk / "data", tmp_path / "duro.log", official_python_service, MIN_FREE_BYTES)
    filler = Filler(disk)
    try:
        status, headers, _ = server.call("/Greeter/greet", "before")
        assert status == 200
        finished = headers["x-restate-id"]
        senders = Senders(server)
        senders.wait_for(202, 20)
        filler.fill_until_free(MIN_FREE_BYTES // 2)
        senders.wait_for(507, 20)
        body = senders.bodies[507]
        assert body["code"] == 507 and "min_free_disk_bytes=16777216" in body["message"], body

        # What needs no new invocation still works: attach, health, the admin API.
        status, _, answer = http("GET", f"{server.ingress}/restate/invocation/{finished}/attach")
        assert (status, json.loads(answer)) == (200, "Hello before!")
        assert http("GET", f"{server.ingress}/restate/health")[0] == 200
        assert http("GET", f"{server.admin}/deployments")[0] == 200

        filler.release()
        wait_until(lambda: server.call("/Greeter/greet", "after")[0] == 200, RECOVERY_TIMEOUT_S, "new invocations to be accepted again")
        senders.stop()
        assert set(senders.statuses) <= {202, 507}, dict(senders.statuses)
        assert_every_acknowledged_send_counted_once(server, senders)
        assert server.alive()
    finally:
        server.stop()


def test_a_disk_filled_to_the_last_byte_gives_507_and_the_node_recovers_by_itself(
    tmp_path: Path, disk: Path, official_python_service: ServiceEndpoint
) -> None:
    """No threshold: the log itself meets ENOSPC, and so does RocksDB; the partitions wait for space instead of the node dying."""
    server = started_node(disk / "data", tmp_path / "duro.log", official_python_service, 0)
    filler = Filler(disk)
    try:
        senders = Senders(server)
        senders.wait_for(202, 20)
        filler.fill_up()
        senders.wait_for(507, 20)
        assert "disk is full" in senders.bodies[507]["message"], senders.bodies[507]
        status, _, body = http("GET", f"{server.ingress}/restate/health")
        # Readiness is honest: while the partitions wait for space the node is not ready, and says which.
        assert status == 200 or (status == 503 and json.loads(body)["partitions_without_leader"]), (status, body)
        assert http("GET", f"{server.admin}/health")[0] == 200
        assert http("GET", f"{server.admin}/deployments")[0] == 200
        assert server.alive()

        filler.release()
        wait_until(lambda: server.call("/Greeter/greet", "after")[0] == 200, RECOVERY_TIMEOUT_S, "the node to serve again")
        senders.stop()
        assert set(senders.statuses) <= {202, 507}, dict(senders.statuses)
        assert_every_acknowledged_send_counted_once(server, senders)
        log = server.log_path.read_text()
        assert "the disk is full" in log and "Traceback" not in log, server.log_tail()
    finally:
        server.stop()


def test_start_up_on_a_full_disk_says_so_in_one_line(tmp_path: Path, disk: Path) -> None:
    data_dir = disk / "data"
    server = DuroServer(data_dir, tmp_path / "duro.log")
    server.start()
    server.wait_ready()
    server.stop()
    filler = Filler(disk)
    filler.fill_up()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "duro", "serve", "--data-dir", str(data_dir), "--partitions", "4", "--ingress-port", "0", "--admin-port", "0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        filler.release()
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"duro: cannot start: the disk holding {data_dir} is full (0 bytes free;"), result.stderr
    assert "Traceback" not in result.stderr
