"""Snapshots with real processes: kill -9 while one is written, restore after the state is lost and the log trimmed, refusal of a foreign repository."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

from tests.processes import DuroServer, ServiceEndpoint, http, wait_until

FAST_SNAPSHOTS = {
    "DURO_SNAPSHOTS__INTERVAL_RECORDS": "300",
    "DURO_SNAPSHOTS__CHECK_INTERVAL_MS": "20",
    "DURO_LOG_MAX_SEGMENT_BYTES": str(256 * 1024),
}


def started(tmp_path: Path, name: str, service: ServiceEndpoint, env: dict[str, str]) -> DuroServer:
    """A `duro serve` on `tmp_path/name` that is ready and has `service` registered."""
    server = DuroServer(tmp_path / name, tmp_path / f"{name}.log", env=env)
    server.start()
    server.wait_ready()
    server.register(service.uri)
    return server


def replayed_records(server: DuroServer) -> int:
    """Records the node's processors replayed at start-up before leading, summed over partitions (from its log)."""
    return sum(int(found) for found in re.findall(r"caught up: replayed (\d+) records", server.log_path.read_text()))


def applied_records(server: DuroServer) -> int:
    """Records in the log of every partition, as the node's applied offsets say (from /metrics)."""
    _, _, body = http("GET", f"{server.admin}/metrics")
    offsets = re.findall(r'^duro_partition_applied_offset\{partition="\d+"\} ([0-9.e+]+)$', body.decode(), re.MULTILINE)
    return sum(int(float(offset)) + 1 for offset in offsets)


def counter(server: DuroServer, key: str) -> int:
    status, _, body = server.call(f"/Counter/{key}/get")
    assert status == 200, body
    return int(json.loads(body))


def torn_snapshots(repository: Path) -> list[Path]:
    """Temporary directories of snapshots being written (what a writer that dies leaves)."""
    if not repository.is_dir():
        return []
    return [entry for folder in repository.iterdir() if folder.is_dir() for entry in folder.iterdir() if entry.name.startswith(".tmp-")]


def whole_snapshots(repository: Path) -> list[Path]:
    if not repository.is_dir():
        return []
    return [entry for folder in repository.iterdir() for entry in folder.iterdir() if (entry / "manifest.json").exists()]


def wait_counted(server: DuroServer, acknowledged: dict[str, int]) -> None:
    """Wait until every key's counter has at least its acknowledged adds."""
    for key, count in acknowledged.items():
        wait_until(lambda key=key, count=count: counter(server, key) >= count, 60, f"{key} to count its {count} adds")


class Sender:
    """Sends Counter.add to a few keys in a background thread, counting the acknowledged (202) sends per key."""

    def __init__(self, server: DuroServer, keys: list[str]) -> None:
        self.server = server
        self.keys = keys
        self.acknowledged = dict.fromkeys(keys, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            key = self.keys[index % len(self.keys)]
            index += 1
            try:
                status, _, _ = self.server.call(f"/Counter/{key}/add/send", 1, timeout_s=5)
            except OSError:
                return  # the server is gone
            if status == 202:
                self.acknowledged[key] += 1

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_kill9_while_a_snapshot_is_written_loses_nothing_acknowledged_and_ignores_the_torn_snapshot(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    server = started(tmp_path, "data", official_python_service, FAST_SNAPSHOTS)
    repository = tmp_path / "data" / "snapshots"
    keys = [f"k{i}" for i in range(8)]
    with Sender(server, keys) as sender:
        wait_until(lambda: len(whole_snapshots(repository)) >= 4, 120, "snapshots to be taken under load")
        wait_until(lambda: torn_snapshots(repository), 120, "a snapshot being written", interval_s=0.0005)
        server.kill9()
    left_torn = torn_snapshots(repository)
    assert left_torn, "kill -9 landed while a snapshot was being written"
    again = DuroServer(server.data_dir, tmp_path / "duro-2.log", env=FAST_SNAPSHOTS)
    again.start()
    try:
        again.wait_ready()
        wait_counted(again, sender.acknowledged)
        assert all(counter(again, key) >= sender.acknowledged[key] for key in keys), "every acknowledged add counted"
        wait_until(lambda: not any(path.exists() for path in left_torn), 30, "the torn snapshot to be discarded")
        wait_until(lambda: again.log_path.read_text().count("caught up: replayed") == 4, 60, "every partition to catch up")
        assert "restored the snapshot" not in again.log_path.read_text(), "the local store was whole: nothing to restore"
    finally:
        again.stop()


def test_a_node_whose_state_is_lost_restores_the_snapshot_and_replays_only_the_tail_of_the_trimmed_log(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    server = started(tmp_path, "data", official_python_service, FAST_SNAPSHOTS)
    log_dir = tmp_path / "data" / "log"
    keys = [f"t{i}" for i in range(8)]
    with Sender(server, keys) as sender:
        wait_until(lambda: not (log_dir / "segment-0000000000.wal").exists(), 180, "the log to be trimmed below a snapshot")
    wait_counted(server, sender.acknowledged)
    expected = {key: counter(server, key) for key in keys}
    assert server.stop() == 0
    shutil.rmtree(tmp_path / "data" / "state")  # the state store is lost; the log alone no longer holds the whole history
    again = DuroServer(server.data_dir, tmp_path / "duro-2.log", env=FAST_SNAPSHOTS)
    again.start()
    try:
        again.wait_ready()
        wait_until(lambda: again.log_path.read_text().count("caught up: replayed") == 4, 60, "every partition to catch up")
        assert again.log_path.read_text().count("restored the snapshot") == 4, again.log_tail()
        assert {key: counter(again, key) for key in keys} == expected
        replayed, held = replayed_records(again), applied_records(again)
        assert replayed < held / 2, f"replayed {replayed} of the {held} records the partitions' logs have had"
        assert counter(again, keys[0]) == expected[keys[0]]
        status, _, _ = again.call(f"/Counter/{keys[0]}/add", 1)
        assert status == 200 and counter(again, keys[0]) == expected[keys[0]] + 1
    finally:
        again.stop()


def test_a_snapshot_repository_of_another_partition_count_is_refused(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    repository = tmp_path / "shared-snapshots"
    env = {**FAST_SNAPSHOTS, "DURO_SNAPSHOTS__REPOSITORY": str(repository), "DURO_SNAPSHOTS__INTERVAL_RECORDS": "1"}
    first = DuroServer(tmp_path / "four", tmp_path / "four.log", partitions=4, env=env)
    first.start()
    first.wait_ready()
    try:
        first.register(official_python_service.uri)
        for key in ("a", "b", "c", "d", "e", "f"):
            assert first.call(f"/Counter/{key}/add", 1)[0] == 200
        wait_until(lambda: len(whole_snapshots(repository)) >= 2, 30, "snapshots of the 4-partition node")
    finally:
        first.stop()
    second = DuroServer(tmp_path / "eight", tmp_path / "eight.log", partitions=8, env=env)
    second.start()
    try:
        assert second.process is not None
        second.process.wait(timeout=60)
        assert second.process.returncode != 0, "a node refuses to start on another partition count's snapshots"
        assert "with 4 partitions, this node runs 8" in second.log_tail(200)
    finally:
        second.stop()
