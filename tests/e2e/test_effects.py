"""The effect side with real processes: what purge leaves, how attempts end, dead connections and tasks, limits that agree.

Each test here reproduces a defect of issue 14 against `duro serve` and a real
SDK endpoint, and failed before its fix.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from duro.limits import RECORD_ALLOWANCE_BYTES
from tests.kafka_broker import KafkaBroker, unavailable_reason
from tests.processes import DuroServer, ManagedProcess, ServiceEndpoint, free_port, http, wait_until


def _expiry_s(header: str) -> float:
    return datetime.datetime.strptime(header, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_purge_then_reuse_of_the_idempotency_key_keeps_the_new_invocation_for_its_own_retention(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    """Purge used to leave the cleanup timer, which then expired the next invocation with the same id early."""
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", env={"DURO_INGRESS__DEFAULT_IDEMPOTENCY_RETENTION_MS": "3000"})
    server.start()
    try:
        server.wait_ready()
        server.register(official_python_service.uri)
        headers = {"idempotency-key": "purge-me"}
        status, first_headers, body = server.call("/Greeter/greet", "first", headers)
        assert status == 200, body
        invocation_id = first_headers["x-restate-id"]
        status, _, body = http("PATCH", f"{server.admin}/invocations/{invocation_id}/purge")
        assert status in (200, 202), body
        time.sleep(1.0)  # spaces the two expiries apart, so that an early expiry is told from the right one
        status, second_headers, body = server.call("/Greeter/greet", "second", headers)
        assert status == 200 and json.loads(body) == "Hello second!", body
        assert second_headers["x-restate-id"] == invocation_id
        second_expires_s = _expiry_s(second_headers["idempotency-expires"])
        output_url = f"{server.ingress}/restate/invocation/Greeter/greet/purge-me/output"
        assert http("GET", output_url)[0] == 200

        def gone() -> float | None:
            return time.time() if http("GET", output_url, timeout_s=5)[0] == 404 else None

        gone_at_s = wait_until(gone, 30, "the second invocation to reach the end of its retention", interval_s=0.05)
        assert gone_at_s >= second_expires_s, (
            f"the second invocation vanished {second_expires_s - gone_at_s:.2f} s before its own retention ended"
        )
    finally:
        server.stop()


FAST_TIMEOUTS = {"DURO_INVOKER__INACTIVITY_TIMEOUT_MS": "300", "DURO_INVOKER__ABORT_TIMEOUT_MS": "300"}


@pytest.mark.parametrize("use_http_11", [False, True], ids=["h2", "http1.1"])
def test_an_attempt_that_never_answers_is_recorded_as_failed_after_the_abort_timeout_and_retried(
    tmp_path: Path, official_python_service: ServiceEndpoint, side_effects: Path, use_http_11: bool
) -> None:
    """The abort timeout used to cancel the attempt and record nothing: the object's key stayed blocked for ever."""
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", env=FAST_TIMEOUTS)
    server.start()
    try:
        server.wait_ready()
        server.register(official_python_service.uri, use_http_11=use_http_11)
        status, _, body = server.call("/Stalling/k1/hang_first/send", "a")
        assert status == 202, body
        stuck_id = json.loads(body)["invocationId"]
        # A second exclusive call on the same key waits in the key's inbox behind the stuck one.
        status, _, body = server.call("/Stalling/k1/hang_first", "b", timeout_s=60)
        assert status == 200 and json.loads(body) == "b answered on attempt 2", body
        status, _, body = http("GET", f"{server.ingress}/restate/invocation/{stuck_id}/output")
        assert status == 200 and json.loads(body) == "a answered on attempt 2", body
        lines = side_effects.read_text().splitlines()
        assert lines.count("hang_first a") == 2 and lines.count("hang_first b") == 2
    finally:
        server.stop()


def test_a_connection_that_stops_reading_is_declared_dead_and_later_invocations_reach_the_deployment_on_a_fresh_one(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    """Before: a wedged connection kept every later invocation of its deployment waiting for ever, though the endpoint took new connections."""
    trigger = tmp_path / "wedge-next-connection"
    proxy = ManagedProcess(
        "wedging proxy",
        [sys.executable, "-m", "tests.services.wedging_proxy", "--port", str(port := free_port()), "--upstream", str(official_python_service.port), "--trigger", str(trigger)],
        tmp_path / "proxy.log",
    )  # fmt: skip
    env = {"DURO_INVOKER__H2_PING_INTERVAL_MS": "300", "DURO_INVOKER__H2_PING_TIMEOUT_MS": "500"}
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", env=env)
    proxy.start()
    server.start()
    try:
        server.wait_ready()
        wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, 10, "the proxy to listen")
        server.register(f"http://127.0.0.1:{port}")
        trigger.touch()  # the invoker's first connection to the deployment is the wedged one
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            calls = [pool.submit(server.call, "/Greeter/greet", name, None, 30) for name in ("one", "two")]
            answers = [call.result() for call in calls]
        assert [(status, json.loads(body)) for status, _, body in answers] == [(200, "Hello one!"), (200, "Hello two!")]
        assert not trigger.exists() and "wedged a connection" in proxy.log_path.read_text()
        assert "did not answer a PING" in server.log_path.read_text()
    finally:
        server.stop()
        proxy.stop()


def test_an_output_over_the_frame_limit_fails_the_invocation_once_and_the_caller_gets_the_error(
    tmp_path: Path, official_python_service: ServiceEndpoint, side_effects: Path
) -> None:
    """Before: a 50 MB output was refused and the handler run again 70 times over 11 minutes, the caller left waiting."""
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log")
    server.start()
    try:
        server.wait_ready()
        server.register(official_python_service.uri)
        status, _, body = server.call("/Stalling/k/big_output", 50_000_000, timeout_s=60)
        assert status == 500, body[:300]
        message = json.loads(body)["message"]
        assert f"max_frame_bytes={32 * 1024 * 1024 - RECORD_ALLOWANCE_BYTES}" in message and "50000" in message, message
        assert side_effects.read_text().splitlines().count("big_output 50000000") == 1
    finally:
        server.stop()


def test_a_timer_append_that_fails_steps_the_partition_down_and_the_timer_fires_after_the_re_claim(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    """Before: one failed timer append ended the timer service until the leader changed, while the node still reported ready."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    env = {"DURO_KAFKA_APPEND_TIMEOUT_MS": "1500", "DURO_KAFKA_SESSION_TIMEOUT_MS": "60000"}
    server = DuroServer(
        tmp_path / "data",
        tmp_path / "duro.log",
        partitions=1,
        extra_args=["--log", "kafka", "--kafka-bootstrap", broker.bootstrap],
        env=env,
    )
    server.start()
    try:
        server.wait_ready(timeout_s=90)

        def leads_partition_0() -> bool:
            return 'duro_partition_is_leader{partition="0"} 1.0' in http("GET", f"{server.admin}/metrics")[2].decode()

        wait_until(leads_partition_0, 60, "the node to be assigned partition 0 and lead it")
        server.register(official_python_service.uri)
        status, _, body = http("POST", f"{server.ingress}/Counter/t/add/send?delay=8s", 1)
        assert status == 202, body
        fires_at = time.monotonic() + 8
        stopped_at = time.monotonic()
        broker.stop()
        assert time.monotonic() < fires_at - 1, f"the broker took {time.monotonic() - stopped_at:.1f} s to stop: the timer fired before"
        time.sleep(max(0.0, fires_at - time.monotonic()) + 4)  # the timer fires during the outage; its append times out after 1.5 s
        assert http("GET", f"{server.ingress}/restate/health", timeout_s=5)[0] == 503, "no working leader while the broker is down"
        broker.start()
        wait_until(lambda: json.loads(server.call("/Counter/t/get", timeout_s=10)[2]) == 1, 90, "the delayed add to run")
        metrics_text = http("GET", f"{server.admin}/metrics")[2].decode()
        assert re.search(r'duro_partition_leader_task_failures_total\{partition="0",task="timers"\} [1-9]', metrics_text), metrics_text[
            -2000:
        ]
        wait_until(lambda: http("GET", f"{server.ingress}/restate/health", timeout_s=5)[0] == 200, 30, "the node to be ready again")
    finally:
        server.stop()
        broker.stop()


def test_a_9_mib_send_on_kafka_is_413_naming_the_limit(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Before: the ingress took 10 MiB bodies while the Kafka log refused appends over 8 MiB, so a 9 MiB send answered 500."""
    topic = f"duro-limits-{uuid.uuid4().hex[:8]}"
    server = DuroServer(
        tmp_path / "data",
        tmp_path / "duro.log",
        partitions=1,
        extra_args=["--log", "kafka", "--kafka-bootstrap", kafka_bootstrap, "--kafka-topic", topic],
    )
    service = ServiceEndpoint("tests.services.official_python:app", tmp_path / "service.log")
    service.start()
    server.start()
    try:
        service.wait_ready()
        server.wait_ready(timeout_s=90)
        server.register(service.uri)
        body = json.dumps("x" * (9 * 1024 * 1024)).encode()
        status, answer = _post_while_sending(server.ingress_port, "/Greeter/greet/send", body)
        assert status == 413, answer[:300]
        assert "max_body_bytes (8323072)" in json.loads(answer)["message"]
        status, _, answer = server.call("/Greeter/greet/send", "small")
        assert status == 202, answer
    finally:
        server.stop()
        service.stop()


def _post_while_sending(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """POST `body`, reading the answer while the body is still being sent (a server may answer 413 before reading it all)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode())
        sender = threading.Thread(target=_send_quietly, args=(sock, body))
        sender.start()
        response = bytearray()
        while b"\r\n\r\n" not in response or len(response) < response.index(b"\r\n\r\n") + 4 + _content_length(response):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
        sock.shutdown(socket.SHUT_RDWR)
        sender.join(30)
    status = int(response.split(b" ", 2)[1])
    return status, bytes(response[response.index(b"\r\n\r\n") + 4 :])


def _send_quietly(sock: socket.socket, body: bytes) -> None:
    try:
        sock.sendall(body)
    except OSError:
        pass  # the server answered and closed before reading it all


def _content_length(response: bytearray) -> int:
    head = bytes(response[: response.index(b"\r\n\r\n")]).decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def test_limits_that_do_not_fit_the_log_stop_start_up_naming_both_settings(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "duro", "serve", "--data-dir", str(tmp_path / "data"), "--ingress-port", "0", "--admin-port", "0"]
    env = {**os.environ, "DURO_MAX_APPEND_BYTES": str(4 * 1024 * 1024), "DURO_INGRESS__MAX_BODY_BYTES": str(6 * 1024 * 1024)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ingress.max_body_bytes (6291456)" in result.stderr and "max_append_bytes (4194304)" in result.stderr, result.stderr
