"""The effect side with real processes: what purge leaves, how attempts end, dead connections and tasks, limits that agree.

Each test here reproduces a defect of issue 14 against `duro serve` and a real
SDK endpoint, and failed before its fix.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

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
