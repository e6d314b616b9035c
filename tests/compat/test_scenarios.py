"""The compatibility scenarios, run for every (runtime, implementation) pair of the matrix.

Each scenario drives the ingress and admin APIs over HTTP and asserts outcomes:
values, counts, status codes, and side effects that ran exactly once. The
`deployment` fixture (conftest.py) supplies a runtime with one implementation
registered; see implementations.py for what every implementation must serve.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.compat.conftest import Deployment
from tests.processes import http, wait_until


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_stateless_call_returns_output_and_invocation_id(deployment: Deployment) -> None:
    status, headers, body = deployment.call("/Greeter/greet", "duro")
    assert status == 200, body
    assert json.loads(body) == "Hello duro!"
    assert headers["x-restate-id"].startswith("inv_1")


def test_concurrent_adds_on_one_key_run_one_at_a_time(deployment: Deployment) -> None:
    key = unique("counter")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: deployment.call(f"/Counter/{key}/add", 1), range(24)))
    assert all(status == 200 for status, _, _ in results), results
    values = sorted(json.loads(body) for _, _, body in results)
    assert values == list(range(1, 25)), "each exclusive add saw the previous one's state"
    status, _, body = deployment.call(f"/Counter/{key}/get")
    assert (status, json.loads(body)) == (200, 24)


def test_each_run_step_executes_once(deployment: Deployment) -> None:
    status, headers, body = deployment.call("/Steps/run_steps", 6)
    assert status == 200, body
    assert json.loads(body) == sum(range(6))
    invocation_id = headers["x-restate-id"]
    lines = deployment.side_effect_lines(f"step {invocation_id} ")
    assert sorted(lines) == sorted(f"step {invocation_id} {i}" for i in range(6))
    attempts = len(deployment.side_effect_lines(f"attempt {invocation_id}"))
    if not deployment.pair.implementation.use_http_11:
        assert attempts == 1, "bidirectional streaming runs all steps in one HTTP request"
    else:
        assert attempts == 7, "request/response re-invokes after each of the 6 steps"


def test_durable_sleep(deployment: Deployment) -> None:
    started = time.monotonic()
    status, _, body = deployment.call("/Steps/sleep_then", 300)
    assert (status, json.loads(body)) == (200, "slept")
    assert time.monotonic() - started >= 0.3


def test_terminal_error_maps_to_status_and_body(deployment: Deployment) -> None:
    status, headers, body = deployment.call("/Steps/fail_terminal", "no such user")
    assert status == 418
    payload = json.loads(body)
    assert payload["code"] == 418 and payload["message"] == "no such user"
    assert headers["x-restate-id"].startswith("inv_1")


def test_retryable_failures_are_retried_until_success(deployment: Deployment) -> None:
    name = unique("flaky")
    status, _, body = deployment.call("/Steps/flaky", name)
    assert (status, json.loads(body)) == (200, "ok after 3")
    assert len(deployment.side_effect_lines(f"flaky {name}")) == 3


def test_awakeable_resolved_over_http(deployment: Deployment) -> None:
    name = unique("awake")
    status, _, body = deployment.call("/Steps/wait_awakeable/send", name)
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]
    line = wait_until(lambda: deployment.side_effect_lines(f"awakeable {name} "), 15, "the awakeable id")[0]
    awakeable_id = line.split()[-1]
    status, _, body = http("POST", f"{deployment.ingress}/restate/awakeables/{awakeable_id}/resolve", "done!")
    assert status == 202, body
    status, _, body = http("GET", f"{deployment.ingress}/restate/invocation/{invocation_id}/attach")
    assert (status, json.loads(body)) == (200, "done!")


def test_call_between_services_and_ordered_one_way_sends(deployment: Deployment) -> None:
    key = unique("called")
    status, _, body = deployment.call("/Steps/call_counter", key)
    assert (status, json.loads(body)) == (200, 1)
    recorder = unique("recorder")
    status, _, _ = deployment.call("/Steps/send_in_order", recorder)
    assert status == 200
    items = wait_until(
        lambda: (lambda r: json.loads(r[2]) if len(json.loads(r[2])) == 5 else None)(deployment.call(f"/Recorder/{recorder}/items")),
        15,
        "five items",
    )
    assert items == [0, 1, 2, 3, 4], "one-way sends to one key run in the order sent"


def test_delayed_send(deployment: Deployment) -> None:
    recorder = unique("delayed")
    started = time.monotonic()
    status, _, body = deployment.call(f"/Recorder/{recorder}/append/send?delay=400ms", 7)
    assert status == 202, body
    status, _, body = deployment.call(f"/Recorder/{recorder}/items")
    assert json.loads(body) == [], "a delayed send does not run before its delay"
    wait_until(lambda: json.loads(deployment.call(f"/Recorder/{recorder}/items")[2]) == [7], 15, "the delayed append")
    assert time.monotonic() - started >= 0.4


def test_idempotency_key_runs_once_and_answers_the_same(deployment: Deployment) -> None:
    key = unique("idem")
    headers = {"idempotency-key": unique("k")}
    first = deployment.call(f"/Counter/{key}/add", 5, headers)
    second = deployment.call(f"/Counter/{key}/add", 5, headers)
    assert first[0] == second[0] == 200
    assert json.loads(first[2]) == json.loads(second[2]) == 5
    assert first[1]["x-restate-id"] == second[1]["x-restate-id"]
    sent = deployment.call(f"/Counter/{key}/add/send", 5, headers)
    assert sent[0] == 202 and json.loads(sent[2])["status"] == "PreviouslyAccepted"
    assert json.loads(deployment.call(f"/Counter/{key}/get")[2]) == 5


def test_workflow_runs_once_with_promise_and_output(deployment: Deployment) -> None:
    key = unique("user")
    status, _, body = deployment.call(f"/Signup/{key}/run/send", "a@b.c")
    assert status == 202 and json.loads(body)["status"] == "Accepted", body
    status, _, body = deployment.call(f"/Signup/{key}/run/send", "a@b.c")
    assert status == 202 and json.loads(body)["status"] == "PreviouslyAccepted", body
    status, _, _ = http("GET", f"{deployment.ingress}/restate/workflow/Signup/{key}/output")
    assert status == 470
    wait_until(lambda: json.loads(deployment.call(f"/Signup/{key}/stage")[2]) == "waiting", 15, "the workflow to wait")
    status, _, body = deployment.call(f"/Signup/{key}/click", "s3cret")
    assert status == 200, body
    status, _, body = http("GET", f"{deployment.ingress}/restate/workflow/Signup/{key}/attach")
    assert (status, json.loads(body)) == (200, "a@b.c verified with s3cret")
    status, _, body = http("GET", f"{deployment.ingress}/restate/workflow/Signup/{key}/output")
    assert (status, json.loads(body)) == (200, "a@b.c verified with s3cret")
    assert len(deployment.side_effect_lines(f"signup-create {key}")) == 1
    status, _, _ = deployment.call(f"/Signup/{key}/run", "a@b.c")
    assert status == 409


def test_unknown_service_and_handler_are_404(deployment: Deployment) -> None:
    status, _, body = deployment.call("/Nope/greet", "x")
    assert status == 404 and b"Nope" in body
    status, _, body = deployment.call("/Greeter/nope", "x")
    assert status == 404 and b"nope" in body


def test_attempt_count_matches_the_transport(deployment: Deployment) -> None:
    """Request/response re-invokes per suspension; bidirectional streaming does not."""
    status, headers, _ = deployment.call("/Steps/run_steps", 3)
    assert status == 200
    attempts = len(deployment.side_effect_lines(f"attempt {headers['x-restate-id']}"))
    assert attempts == (4 if deployment.pair.implementation.use_http_11 else 1)


def test_cancel_a_blocked_invocation(deployment: Deployment) -> None:
    name = unique("cancel")
    status, _, body = deployment.call("/Steps/wait_awakeable/send", name)
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]
    wait_until(lambda: deployment.side_effect_lines(f"awakeable {name} "), 15, "the invocation to block")
    status, _, body = http("PATCH", f"{deployment.admin}/invocations/{invocation_id}/cancel")
    assert status in (200, 202), body
    status, _, body = http("GET", f"{deployment.ingress}/restate/invocation/{invocation_id}/attach")
    assert status == 409, body


def test_state_of_an_object_read_through_a_shared_handler_while_exclusive_runs(deployment: Deployment) -> None:
    key = unique("durable")
    status, _, _ = deployment.call(f"/Durable/{key}/step_sleep_step/send", 1500)
    assert status == 202
    wait_until(lambda: json.loads(deployment.call(f"/Durable/{key}/status")[2]) == "charged", 15, "the shared read to see the state")


def test_attach_by_invocation_id(deployment: Deployment) -> None:
    status, _, body = deployment.call("/Steps/sleep_then/send", 200)
    assert status == 202
    invocation_id = json.loads(body)["invocationId"]
    status, headers, body = http("GET", f"{deployment.ingress}/restate/invocation/{invocation_id}/attach")
    assert (status, json.loads(body)) == (200, "slept")
    assert headers.get("content-type", "").startswith("application/json"), "the handler's output content type, found by id alone"
    status, _, body = http("GET", f"{deployment.ingress}/restate/invocation/{invocation_id}/output")
    assert (status, json.loads(body)) == (200, "slept")
