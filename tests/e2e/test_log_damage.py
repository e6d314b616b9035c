"""A damaged log on disk, with real `duro serve` processes: a torn tail is dropped, corruption stops start-up with the way out."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import uuid
from pathlib import Path

from tests.processes import DuroServer, ServiceEndpoint, wait_until

START_TIMEOUT_S = 60


def serve_once(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`duro serve` on `data_dir` that is expected to refuse to start: its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "duro", "serve", "--data-dir", str(data_dir), "--partitions", "4", "--ingress-port", "0", "--admin-port", "0", *extra],
        capture_output=True, text=True, timeout=START_TIMEOUT_S,
    )  # fmt: skip


def last_segment(data_dir: Path) -> Path:
    return sorted((data_dir / "log").glob("segment-*.wal"))[-1]


def crash_after_acknowledged_adds(tmp_path: Path, endpoint: ServiceEndpoint, prefix: str, count: int) -> tuple[Path, str]:
    """Start a node, add 1 to a counter `count` times (each acknowledged), kill -9 it; return its data dir and the key."""
    data_dir = tmp_path / "data"
    server = DuroServer(data_dir, tmp_path / "duro.log")
    server.start()
    server.wait_ready()
    server.register(endpoint.uri)
    key = f"{prefix}-{uuid.uuid4().hex[:6]}"
    acknowledged_adds(server, key, count)
    server.kill9()
    return data_dir, key


def acknowledged_adds(server: DuroServer, key: str, count: int) -> None:
    for _ in range(count):
        status, _, body = server.call(f"/Counter/{key}/add/send", 1)
        assert status == 202, body
    wait_until(lambda: json.loads(server.call(f"/Counter/{key}/get")[2]) == count, 30, f"the counter to reach {count}")


def test_a_bit_flipped_in_the_middle_of_the_last_segment_stops_start_up(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    data_dir, key = crash_after_acknowledged_adds(tmp_path, official_python_service, "flip", 150)

    segment = last_segment(data_dir)
    damaged = bytearray(segment.read_bytes())
    middle = len(damaged) // 2
    damaged[middle] ^= 0x10  # one bit
    segment.write_bytes(bytes(damaged))

    refused = serve_once(data_dir)
    assert refused.returncode == 1, refused.stderr
    message = refused.stderr
    assert f"log segment {segment} is corrupt at byte" in message, message
    assert "This is not a torn write" in message and "--truncate-corrupt-tail" in message and "restore the data dir" in message, message
    assert segment.read_bytes() == bytes(damaged), "nothing was cut"

    # The operator accepts the loss: the log is cut, but the state store has applied entries beyond the cut.
    cut = serve_once(data_dir, "--truncate-corrupt-tail")
    assert cut.returncode == 1, cut.stderr
    assert "--truncate-corrupt-tail: cutting" in cut.stderr, cut.stderr
    assert "the state store has applied the log up to offset" in cut.stderr and str(data_dir / "state") in cut.stderr, cut.stderr
    assert segment.stat().st_size <= middle

    # With the state removed it is rebuilt from what is left of the log, and the node serves again.
    shutil.rmtree(data_dir / "state")
    again = DuroServer(data_dir, tmp_path / "duro-2.log")
    again.start()
    try:
        again.wait_ready(START_TIMEOUT_S)
        counted = json.loads(again.call(f"/Counter/{key}/get")[2])
        assert 0 <= counted < 150, counted
    finally:
        again.stop()


def test_a_torn_tail_is_dropped_and_every_acknowledged_write_stays(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    data_dir, key = crash_after_acknowledged_adds(tmp_path, official_python_service, "torn", 60)

    # What a crash in the middle of a commit leaves: the start of a frame whose payload never reached the disk.
    with open(last_segment(data_dir), "ab") as file:
        file.write(struct.pack(">IIHQ", 4000, 0x12345678, 0, 999) + b"half a payload")

    again = DuroServer(data_dir, tmp_path / "duro-2.log")
    again.start()
    try:
        again.wait_ready(START_TIMEOUT_S)
        assert json.loads(again.call(f"/Counter/{key}/get")[2]) == 60
        status, _, body = again.call(f"/Counter/{key}/add", 1)
        assert (status, json.loads(body)) == (200, 61)
        assert "dropped a torn tail of 32 bytes" in again.log_path.read_text()
    finally:
        again.stop()
