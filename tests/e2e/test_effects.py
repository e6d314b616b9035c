"""The effect side with real processes: what purge leaves, how attempts end, dead connections and tasks, limits that agree.

Each test here reproduces a defect of issue 14 against `duro serve` and a real
SDK endpoint, and failed before its fix.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest

from tests.processes import DuroServer, ServiceEndpoint, http, wait_until


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
