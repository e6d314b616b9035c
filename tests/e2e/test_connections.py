"""Connections at the edge of a real `duro serve`: too many idle clients, slow headers, huge headers, garbage.

With the common descriptor limit of 1024, 1,100 idle connections used to stop
all new work for 19 s and then make the log fail to open a segment. Now the
node caps its connections below the limit (keeping descriptors for the log
and the state store), refuses the excess with 503, closes idle ones, and the
log keeps working throughout.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import DuroServer, ServiceEndpoint, http, wait_until

IDLE_TIMEOUT_MS = 2_000
HEADER_READ_TIMEOUT_MS = 2_000
DESCRIPTOR_LIMIT = 1024
IDLE_CLIENTS = 1_100


@pytest.fixture
def node(tmp_path: Path, official_python_service: ServiceEndpoint) -> Iterator[DuroServer]:
    env = {"DURO_INGRESS__IDLE_TIMEOUT_MS": str(IDLE_TIMEOUT_MS), "DURO_INGRESS__HEADER_READ_TIMEOUT_MS": str(HEADER_READ_TIMEOUT_MS)}
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", env=env)
    server.file_descriptor_limit = DESCRIPTOR_LIMIT
    with server.serving(official_python_service):
        yield server


def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # the server may close before it has read everything
            sock.sendall(data)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def raise_own_descriptor_limit(needed: int) -> None:
    """The test opens `needed` sockets itself: raise its soft limit to the hard one, or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the test needs {needed} descriptors, its hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def test_1100_idle_connections_under_a_1024_descriptor_limit_leave_the_log_and_new_requests_working(node: DuroServer) -> None:
    raise_own_descriptor_limit(IDLE_CLIENTS + 200)
    log_text = node.log_path.read_text()
    assert "file descriptors: limit 1024, 256 reserved" in log_text and "lowered from" in log_text, log_text
    # A delayed send whose timer fires while the idle clients hold the connections: the log and the partitions go on.
    status, _, body = node.call("/Counter/idle/add/send?delay=3s", 5)
    assert status == 202, body
    idle: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(IDLE_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", node.ingress_port), timeout=10)
            idle.append(sock)
        time.sleep(0.5)
        for sock in idle:  # the connections beyond the cap were answered 503 and closed at once
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                if sock.recv(64).startswith(b"HTTP/1.1 503"):
                    refused += 1
        assert refused >= IDLE_CLIENTS - DESCRIPTOR_LIMIT, f"only {refused} connections were refused"
        assert http("GET", f"{node.admin}/health")[0] == 200, "the admin API has connections of its own"
        # Idle connections are closed after the idle timeout; new requests are served again, and the delayed add ran.
        wait_until(lambda: node.call("/Counter/idle/get", timeout_s=10)[0] == 200, 30, "a new request to be served")
        wait_until(lambda: json.loads(node.call("/Counter/idle/get")[2]) == 5, 30, "the delayed send to run")
        status, _, body = node.call("/Counter/idle/add", 1)
        assert (status, json.loads(body)) == (200, 6)
    finally:
        for sock in idle:
            sock.close()
    text = node.log_path.read_text()
    assert "Too many open files" not in text, text
    assert "refusing new ones with 503" in text
    assert node.alive()


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (b"POST /Greeter/greet HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n", 431, "max_header_bytes=65536"),
        (b"GET /restate/health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431, "max_header_count=100"),
        (b"\x00\x01 nonsense\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET /restate/health HTTP/1.1\r\nHost: x\r\n", 408, f"header_read_timeout_ms={HEADER_READ_TIMEOUT_MS}"),
    ],
    ids=["8 MB header", "200 headers", "garbage", "headers never finished"],
)
def test_requests_beyond_the_bounds_get_a_4xx_naming_the_bound(node: DuroServer, request_bytes: bytes, status: int, message: str) -> None:
    answered, body = status_and_body(exchange(node.ingress_port, request_bytes))
    assert answered == status and message in body["message"] and body["source"] == "ingress", body
    admin_answered, admin_body = status_and_body(exchange(node.admin_port, request_bytes.replace(b"/Greeter/greet", b"/deployments")))
    assert admin_answered == status and message in admin_body["message"], admin_body
    assert node.call("/Greeter/greet", "still here")[0] == 200


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(node: DuroServer) -> None:
    started = time.monotonic()
    assert exchange(node.ingress_port, b"") == b""
    assert IDLE_TIMEOUT_MS / 1000 * 0.9 <= time.monotonic() - started < 30
