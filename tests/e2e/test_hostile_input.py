"""Hostile and careless requests against a real `duro serve`: every client mistake is a 4xx (or 502 for a bad deployment), never a 500.

The named cases are the ones a fuzzing run found answered 500; the seeded
fuzzer then sends a few thousand requests built from the pieces that broke
things (empty and odd path segments, ids of the wrong shape and type, deeply
nested JSON, wrong content types, bodies of the wrong kind) to both APIs.
No answer may be a 5xx other than 502 (a deployment URI that is not a
deployment), and no answer may carry internal exception text.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.processes import DuroServer, ServiceEndpoint, wait_until
from tests.processes import http as request

FUZZ_REQUESTS = 2_000
FUZZ_SEED = int(os.environ.get("DURO_FUZZ_SEED", "15"))
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
INTERNAL_WORDS = (
    "Traceback",
    "RecursionError",
    "IndexError",
    "KeyError",
    "TypeError",
    "AttributeError",
    "object has no attribute",
    "/work/",
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuroServer]:
    tmp = tmp_path_factory.mktemp("hostile")
    endpoint = ServiceEndpoint("tests.services.official_python:app", tmp / "service.log")
    endpoint.start()
    try:
        endpoint.wait_ready()
        with DuroServer(tmp / "data", tmp / "duro.log").serving(endpoint) as server:
            yield server
    finally:
        endpoint.stop()


def assert_clean(status: int, body: bytes, what: str) -> None:
    assert status < 500 or status == 502, f"{what}: {status} {body[:300]!r}"
    text = body.decode("utf-8", errors="replace")
    for word in INTERNAL_WORDS:
        assert word not in text, f"{what}: internal text {word!r} in {text[:300]!r}"


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("api", "method", "path", "body", "headers", "status", "fragment"),
    [
        ("ingress", "POST", "/restate/call", None, {}, 400, "expected /restate/call/:service-name/:handler"),
        ("ingress", "POST", "/restate/send", None, {}, 400, "expected /restate/send/:service-name/:handler"),
        ("ingress", "POST", "/restate/call/", None, {}, 400, "bad path"),
        ("ingress", "POST", "/Greeter/greet", DEEP_JSON, JSON, 400, "nests deeper than this server parses"),
        ("ingress", "POST", "/restate/attach", {"target": "invocation", "invocationId": 5}, {}, 400, "'invocationId' must be a string"),
        ("ingress", "POST", "/restate/attach", {"target": "workflow", "workflowName": ["x"]}, {}, 400, "'workflowName' must be a string"),
        ("ingress", "POST", "/restate/attach", {"target": "idempotentInvocation"}, {}, 400, "'service' must be a string, found missing"),
        ("ingress", "POST", "/restate/attach", DEEP_JSON, JSON, 400, "nests deeper"),
        ("admin", "POST", "/deployments", DEEP_JSON, JSON, 400, "nests deeper"),
        ("admin", "POST", "/query", DEEP_JSON, JSON, 400, "nests deeper"),
        ("admin", "POST", "/deployments", {"uri": "http://127.0.0.1:1"}, {}, 502, "connection refused"),
        ("admin", "POST", "/deployments", {"uri": "http://no-such-host.invalid:9080"}, {}, 502, "no-such-host.invalid"),
    ],
)
def test_each_client_mistake_is_a_4xx_naming_what_was_wrong(
    node: DuroServer, api: str, method: str, path: str, body: object, headers: dict[str, str], status: int, fragment: str
) -> None:
    base = node.ingress if api == "ingress" else node.admin
    answered, _, answer = request(method, base + path, body, headers)
    assert answered == status, answer[:300]
    assert fragment in json.loads(answer)["message"], answer[:300]
    assert_clean(answered, answer, path)


def test_a_deployment_that_answers_garbage_or_nothing_is_a_502(node: DuroServer) -> None:
    with contextlib.ExitStack() as stack:
        garbage = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        silent = stack.enter_context(socket.create_server(("127.0.0.1", 0)))

        def answer_garbage() -> None:
            connection, _ = garbage.accept()
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.0\r\n" * 10)

        for use_http_11 in (False, True):
            threading.Thread(target=answer_garbage, daemon=True).start()
            uri = f"http://127.0.0.1:{garbage.getsockname()[1]}"
            status, _, body = request("POST", f"{node.admin}/deployments", {"uri": uri, "use_http_11": use_http_11})
            assert status == 502, body
            assert "SSH-2.0" not in body.decode(), "what the endpoint sent is not echoed"
        status, _, body = request("POST", f"{node.admin}/deployments", {"uri": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        assert status == 502 and "within" in json.loads(body)["message"], body


def test_admin_bodies_are_bounded(node: DuroServer) -> None:
    # Declared too large: refused before a byte of it is read.
    connection = http.client.HTTPConnection("127.0.0.1", node.admin_port, timeout=30)
    connection.putrequest("POST", "/deployments")
    connection.putheader("content-type", "application/json")
    connection.putheader("content-length", str(500 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"max_admin_body_bytes" in response.read()
    connection.close()
    # Streamed without a length: refused once it passes the bound; the node's memory does not grow with it.
    rss_before = resident_kib(node)
    answer = stream_chunked(node.admin_port, "/deployments", total_bytes=50 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert resident_kib(node) - rss_before < 20 * 1024, "the refused body was not buffered"


def resident_kib(node: DuroServer) -> int:
    assert node.process is not None
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stream_chunked(port: int, path: str, total_bytes: int) -> bytes:
    """POST a chunked body of `total_bytes` until the server answers; return what it answered."""
    chunk = b"[" + b"0," * 32_000 + b"0]"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".encode())
        sent = 0
        with contextlib.suppress(OSError):
            while sent < total_bytes:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        answer = b""
        with contextlib.suppress(OSError):
            while part := sock.recv(65536):
                answer += part
    return answer


def test_a_client_that_goes_away_mid_body_is_one_info_line(node: DuroServer) -> None:
    before = node.log_path.read_text()
    with socket.create_connection(("127.0.0.1", node.ingress_port), timeout=10) as sock:
        sock.sendall(
            b'POST /Greeter/greet HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"only a part'
        )
        time.sleep(0.2)
    wait_until(lambda: "went away" in node.log_path.read_text()[len(before) :], 10, "the disconnect to be logged")
    added = node.log_path.read_text()[len(before) :].splitlines()
    assert [line for line in added if "went away" in line and " INFO " in line], added
    assert not [line for line in added if " ERROR " in line or "Traceback" in line], added


def test_query_cannot_create_files(node: DuroServer) -> None:
    target = node.data_dir / "attached.db"
    for sql in (
        f"ATTACH DATABASE '{target}' AS x",
        f"COPY (SELECT 1) TO '{target}'",
        f"CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{target}'",
    ):
        status, _, body = request("POST", f"{node.admin}/query", {"query": sql}, {"accept": "application/json"})
        assert 400 <= status < 500, (sql, status, body)
        assert_clean(status, body, sql)
    assert not target.exists()


# ---------------------------------------------------------------- the fuzzer

_SEGMENTS = [
    "Greeter", "greet", "Counter", "add", "get", "Nope", "send", "call", "restate", "invocation", "workflow", "attach",
    "output", "awakeables", "a", "resolve", "reject", "health", "", "%ff", "%00", "..", "a" * 300, "inv_1abc",
    "inv_1" + "A" * 33, "sign_1" + "B" * 37, "prom_1x", "\u00e9", "key with space", "UserSignup", "run",
]  # fmt: skip
_ADMIN_PATHS = [
    "/deployments", "/deployments/dp_1nope", "/services", "/services/Greeter", "/services/Nope/handlers/x", "/services/Greeter/state",
    "/invocations/inv_1abc/cancel", "/invocations/inv_1" + "A" * 33 + "/kill", "/invocations/x", "/query", "/v1/health",
    "/v9/deployments", "/subscriptions", "/internal/replies", "/version", "/health", "/openapi", "/metrics",
]  # fmt: skip
_CONTENT_TYPES = [None, "application/json", "text/plain", "application/octet-stream", "application/json; charset=latin-1", "garbage/"]


def _fuzz_body(rng: random.Random) -> bytes | None:
    choice = rng.randrange(9)
    if choice == 0:
        return None
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if choice == 2:
        depth = rng.choice([10, 1_000, 5_000])
        return b"[" * depth + b"]" * depth
    if choice == 3:
        value = rng.choice([5, None, [], {}, "x", 1.5, True, {"target": rng.choice(["invocation", "workflow", 7, None])}])
        return json.dumps({"target": "invocation", "invocationId": value, "uri": value, "query": value}).encode()
    if choice == 4:
        return json.dumps({"uri": rng.choice(["http://127.0.0.1:1", "ftp://x", "http://x y", 5, "http://[::1"])}).encode()
    if choice == 5:
        return json.dumps(rng.choice(["x", 1, [1, 2], {"a": {"b": [None]}}])).encode()
    if choice == 6:
        return b'{"query": "' + rng.choice([b"SELECT * FROM sys_invocation", b"SELEC", b"DROP TABLE x", b"\\u0000"]) + b'"}'
    if choice == 7:
        return b"\xff\xfe" + b"\x00" * rng.randrange(10)
    return b"{" * rng.randrange(1, 50)


def _fuzz_request(rng: random.Random, node: DuroServer) -> tuple[str, int, str, bytes | None, dict[str, str]]:
    method = rng.choice(["GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    headers: dict[str, str] = {}
    content_type = rng.choice(_CONTENT_TYPES)
    if content_type is not None:
        headers["content-type"] = content_type
    if rng.random() < 0.2:
        headers["idempotency-key"] = rng.choice(["k", "", "x" * 500, "\u00e9"]).encode("utf-8").decode("latin-1")
    if rng.random() < 0.5:
        path = "/" + "/".join(rng.choice(_SEGMENTS) for _ in range(rng.randrange(0, 8)))
        port = node.ingress_port
    else:
        path = rng.choice(_ADMIN_PATHS)
        port = node.admin_port
    if rng.random() < 0.2:
        path += "?" + rng.choice(["delay=1x", "delay=PT1S", "mode=purge", "force=maybe", "a=%ff", "deployment=latest"])
    return method, port, quote(path, safe="/%?=&:"), _fuzz_body(rng), headers


def test_seeded_fuzzing_gets_no_5xx_and_no_internal_text(node: DuroServer) -> None:
    rng = random.Random(FUZZ_SEED)
    statuses: dict[int, int] = {}
    print(f"\nfuzzing with seed {FUZZ_SEED} (DURO_FUZZ_SEED)")
    before = node.log_path.read_text()
    for index in range(FUZZ_REQUESTS):
        method, port, path, body, headers = _fuzz_request(rng, node)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            status = response.status
        except TimeoutError:  # a call to a real handler may wait; the node keeps it, the fuzzer moves on
            status, answer = 0, b""
        finally:
            connection.close()
        statuses[status] = statuses.get(status, 0) + 1
        assert_clean(status, answer, f"request {index} (seed {FUZZ_SEED}): {method} :{port}{path} {body!r:.80}")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    added = node.log_path.read_text()[len(before) :]
    assert "failed unexpectedly" not in added and "Traceback" not in added, added[-3000:]
    assert node.alive()
