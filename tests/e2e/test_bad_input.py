"""Bad input and bad deployments get clear errors and lose nothing; the runtime keeps serving."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import DuroServer, ServiceEndpoint, free_port, wait_until
from tests.processes import http as request


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuroServer, ServiceEndpoint, ServiceEndpoint, Path]]:
    tmp = tmp_path_factory.mktemp("bad-input")
    side_effects = tmp / "side-effects.log"
    good = ServiceEndpoint(
        "tests.services.official_python:app", tmp / "good.log", {"DURO_TEST_SIDE_EFFECTS": str(side_effects)}, ["--max-requests", "5"]
    )
    bad = ServiceEndpoint("tests.services.bad_endpoint:app", tmp / "bad.log", {"DURO_TEST_SIDE_EFFECTS": str(side_effects)})
    server = DuroServer(tmp / "data", tmp / "duro.log", extra_args=[])
    for process in (good, bad, server):
        process.start()
    try:
        good.wait_ready()
        bad.wait_ready()
        server.wait_ready()
        server.register(good.uri)
        yield server, good, bad, side_effects
    finally:
        for process in (server, good, bad):
            process.stop()


def test_registration_of_an_unreachable_uri_fails_with_the_reason_and_registers_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    server, *_ = setup
    before = json.loads(request("GET", f"{server.admin}/deployments")[2])
    uri = f"http://127.0.0.1:{free_port()}"
    status, _, body = request("POST", f"{server.admin}/deployments", {"uri": uri})
    assert status >= 400, body
    message = json.loads(body)["message"]
    assert uri.split("//")[1] in message, message
    after = json.loads(request("GET", f"{server.admin}/deployments")[2])
    assert after == before


def test_registration_of_a_non_manifest_fails(setup) -> None:  # type: ignore[no-untyped-def]
    server, _, bad, _ = setup
    status, _, body = request("POST", f"{server.admin}/deployments", {"uri": f"{bad.uri}/not-a-manifest"})
    assert status >= 400
    assert "manifest" in json.loads(body)["message"].lower()


def test_bad_json_body_is_400_and_oversized_body_is_413(setup) -> None:  # type: ignore[no-untyped-def]
    server, *_ = setup
    status, _, body = server.call("/Greeter/greet", b"{not json", {"content-type": "application/json"})
    assert status == 400 and b"JSON" in body
    # The ingress rejects by content-length before reading the body (the default limit is 10 MiB).
    connection = http.client.HTTPConnection("127.0.0.1", server.ingress_port, timeout=10)
    connection.putrequest("POST", "/Greeter/greet")
    connection.putheader("content-type", "application/json")
    connection.putheader("content-length", str(11 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert b"10485760" in response.read(), "the error names the limit"
    connection.close()


def test_a_protocol_violation_fails_the_attempt_with_a_logged_reason_and_the_runtime_keeps_serving(setup) -> None:  # type: ignore[no-untyped-def]
    server, _, bad, side_effects = setup
    server.register(bad.uri)
    status, _, body = server.call("/Bad/garbage/send")
    assert status == 202, body
    wait_until(
        lambda: side_effects.exists() and side_effects.read_text().count("invoke garbage") >= 3, 20, "retries of the broken invocation"
    )
    assert "0x7777" in server.log_path.read_text(), "the reason (the unknown message type) is logged"
    status, _, body = server.call("/Greeter/greet", "still here")
    assert (status, json.loads(body)) == (200, "Hello still here!")


def test_goaway_from_the_deployment_is_survived_at_once(setup) -> None:  # type: ignore[no-untyped-def]
    """The endpoint sends GOAWAY after every 5 requests on a connection; every call still succeeds."""
    server, *_ = setup
    for i in range(40):
        status, _, body = server.call("/Greeter/greet", f"n{i}", timeout_s=20)
        assert (status, json.loads(body)) == (200, f"Hello n{i}!")
    status, _, body = server.call("/Steps/run_steps", 12, timeout_s=30)
    assert (status, json.loads(body)) == (200, sum(range(12)))
