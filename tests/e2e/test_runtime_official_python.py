"""duro end to end with the official Python SDK: `duro serve` and a hypercorn endpoint as real processes.

Every scenario runs twice: registered over HTTP/2 (bidirectional streaming)
and with `use_http_11` (request/response, one re-invocation per suspension).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.processes import DuroServer, ServiceEndpoint, http, wait_until


class Env:
    def __init__(self, duro: DuroServer, service: ServiceEndpoint, side_effects: Path, mode: str) -> None:
        self.mode = mode
        self.duro = duro
        self.service = service
        self.side_effects = side_effects

    def side_effect_lines(self, prefix: str) -> list[str]:
        if not self.side_effects.exists():
            return []
        return [line for line in self.side_effects.read_text().splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module", params=["bidi", "http1.1"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """duro plus the endpoint, registered in the mode named by the parameter."""
    tmp = tmp_path_factory.mktemp(f"official-python-{request.param}")
    side_effects = tmp / "side-effects.log"
    service = ServiceEndpoint("tests.services.official_python:app", tmp / "service.log", {"DURO_TEST_SIDE_EFFECTS": str(side_effects)})
    duro = DuroServer(tmp / "data", tmp / "duro.log")
    service.start()
    duro.start()
    try:
        service.wait_ready()
        duro.wait_ready()
        duro.register(service.uri, use_http_11=request.param == "http1.1")
        yield Env(duro, service, side_effects, request.param)
    finally:
        duro.stop()
        service.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_stateless_call_returns_output_and_invocation_id(env: Env) -> None:
    status, headers, body = env.duro.call("/Greeter/greet", "duro")
    assert status == 200, body
    assert json.loads(body) == "Hello duro!"
    assert headers["x-restate-id"].startswith("inv_1")


def test_concurrent_adds_on_one_key_run_one_at_a_time(env: Env) -> None:
    key = unique("counter")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: env.duro.call(f"/Counter/{key}/add", 1), range(24)))
    assert all(status == 200 for status, _, _ in results), results
    values = sorted(json.loads(body) for _, _, body in results)
    assert values == list(range(1, 25)), "each exclusive add saw the previous one's state"
    status, _, body = env.duro.call(f"/Counter/{key}/get")
    assert (status, json.loads(body)) == (200, 24)


def test_each_run_step_executes_once(env: Env) -> None:
    status, headers, body = env.duro.call("/Steps/run_steps", 6)
    assert status == 200, body
    assert json.loads(body) == sum(range(6))
    invocation_id = headers["x-restate-id"]
    lines = env.side_effect_lines(f"step {invocation_id} ")
    assert sorted(lines) == sorted(f"step {invocation_id} {i}" for i in range(6))
    attempts = len(env.side_effect_lines(f"attempt {invocation_id}"))
    if env.mode == "bidi":
        assert attempts == 1, "bidirectional streaming runs all steps in one HTTP request"
    else:
        assert attempts == 7, "request/response re-invokes after each of the 6 steps"


def test_durable_sleep(env: Env) -> None:
    started = time.monotonic()
    status, _, body = env.duro.call("/Steps/sleep_then", 300)
    assert (status, json.loads(body)) == (200, "slept")
    assert time.monotonic() - started >= 0.3


def test_terminal_error_maps_to_status_and_body(env: Env) -> None:
    status, headers, body = env.duro.call("/Steps/fail_terminal", "no such user")
    assert status == 418
    payload = json.loads(body)
    assert payload["code"] == 418 and payload["message"] == "no such user"
    assert headers["x-restate-id"].startswith("inv_1")


def test_retryable_failures_are_retried_until_success(env: Env) -> None:
    name = unique("flaky")
    status, _, body = env.duro.call("/Steps/flaky", name)
    assert (status, json.loads(body)) == (200, "ok after 3")
    assert len(env.side_effect_lines(f"flaky {name}")) == 3


def test_awakeable_resolved_over_http(env: Env) -> None:
    name = unique("awake")
    status, _, body = env.duro.call("/Steps/wait_awakeable/send", name)
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]
    line = wait_until(lambda: env.side_effect_lines(f"awakeable {name} "), 15, "the awakeable id")[0]
    awakeable_id = line.split()[-1]
    status, _, body = http("POST", f"{env.duro.ingress}/restate/awakeables/{awakeable_id}/resolve", "done!")
    assert status == 202, body
    status, _, body = http("GET", f"{env.duro.ingress}/restate/invocation/{invocation_id}/attach")
    assert (status, json.loads(body)) == (200, "done!")


def test_call_between_services_and_ordered_one_way_sends(env: Env) -> None:
    key = unique("called")
    status, _, body = env.duro.call("/Steps/call_counter", key)
    assert (status, json.loads(body)) == (200, 1)
    recorder = unique("recorder")
    status, _, _ = env.duro.call("/Steps/send_in_order", recorder)
    assert status == 200
    items = wait_until(lambda: (lambda r: json.loads(r[2]) if len(json.loads(r[2])) == 5 else None)(env.duro.call(f"/Recorder/{recorder}/items")), 15, "five items")
    assert items == [0, 1, 2, 3, 4], "one-way sends to one key run in the order sent"


def test_delayed_send(env: Env) -> None:
    recorder = unique("delayed")
    started = time.monotonic()
    status, _, body = env.duro.call(f"/Recorder/{recorder}/append/send?delay=400ms", 7)
    assert status == 202, body
    status, _, body = env.duro.call(f"/Recorder/{recorder}/items")
    assert json.loads(body) == [], "a delayed send does not run before its delay"
    wait_until(lambda: json.loads(env.duro.call(f"/Recorder/{recorder}/items")[2]) == [7], 15, "the delayed append")
    assert time.monotonic() - started >= 0.4


def test_idempotency_key_runs_once_and_answers_the_same(env: Env) -> None:
    key = unique("idem")
    headers = {"idempotency-key": unique("k")}
    first = env.duro.call(f"/Counter/{key}/add", 5, headers)
    second = env.duro.call(f"/Counter/{key}/add", 5, headers)
    assert first[0] == second[0] == 200
    assert json.loads(first[2]) == json.loads(second[2]) == 5
    assert first[1]["x-restate-id"] == second[1]["x-restate-id"]
    sent = env.duro.call(f"/Counter/{key}/add/send", 5, headers)
    assert sent[0] == 202 and json.loads(sent[2])["status"] == "PreviouslyAccepted"
    assert json.loads(env.duro.call(f"/Counter/{key}/get")[2]) == 5


def test_workflow_runs_once_with_promise_and_output(env: Env) -> None:
    key = unique("user")
    status, _, body = env.duro.call(f"/Signup/{key}/run/send", "a@b.c")
    assert status == 202 and json.loads(body)["status"] == "Accepted", body
    status, _, body = env.duro.call(f"/Signup/{key}/run/send", "a@b.c")
    assert status == 202 and json.loads(body)["status"] == "PreviouslyAccepted", body
    status, _, _ = http("GET", f"{env.duro.ingress}/restate/workflow/Signup/{key}/output")
    assert status == 470
    wait_until(lambda: json.loads(env.duro.call(f"/Signup/{key}/stage")[2]) == "waiting", 15, "the workflow to wait")
    status, _, body = env.duro.call(f"/Signup/{key}/click", "s3cret")
    assert status == 200, body
    status, _, body = http("GET", f"{env.duro.ingress}/restate/workflow/Signup/{key}/attach")
    assert (status, json.loads(body)) == (200, "a@b.c verified with s3cret")
    status, _, body = http("GET", f"{env.duro.ingress}/restate/workflow/Signup/{key}/output")
    assert (status, json.loads(body)) == (200, "a@b.c verified with s3cret")
    assert len(env.side_effect_lines(f"signup-create {key}")) == 1
    status, _, _ = env.duro.call(f"/Signup/{key}/run", "a@b.c")
    assert status == 409


def test_unknown_service_and_handler_are_404(env: Env) -> None:
    status, _, body = env.duro.call("/Nope/greet", "x")
    assert status == 404 and b"Nope" in body
    status, _, body = env.duro.call("/Greeter/nope", "x")
    assert status == 404 and b"nope" in body
