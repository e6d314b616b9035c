"""duro's SDK against the REAL Restate server: the seed examples and the SDK test services, over h2c and HTTP/1.1, on protocol V6 and V7.

The server is started only through shared/tools/restate-server/restate-server.sh
(the V7 run sets RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7=true for it). The
examples app (`python -m examples.app`) and the test services are real
hypercorn processes; deployments are registered through the admin API and
every check goes through the ingress on 8080.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import ManagedProcess, RestateServer, ServiceEndpoint, free_port, http, wait_until

pytestmark = pytest.mark.timeout(300)

SIDE_EFFECT_LOG_ENV = "DURO_EXAMPLES_SIDE_EFFECT_LOG"
SERVER_ENV = {"v6": {}, "v7": {"RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7": "true"}}
EXPECTED_PROTOCOL_VERSION = {"v6": 6, "v7": 7}
POLL_TIMEOUT_S = 30.0
PORT_WAIT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Endpoints:
    """The two SDK processes and the side-effect log they append to."""

    examples_uri: str
    test_services_uri: str
    side_effects: Path


@dataclass(frozen=True)
class Deployed:
    """A running Restate server with both endpoints registered in one transport mode."""

    server: RestateServer
    side_effects: Path
    flavor: str
    transport: str

    def call(self, path: str, body: object = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return self.server.call(path, body, headers)

    def side_effect_lines(self, name: str, tag: str) -> list[list[str]]:
        """Logged side effects `name` whose second field is `tag`."""
        if not self.side_effects.exists():
            return []
        rows = [line.split("\t") for line in self.side_effects.read_text().splitlines()]
        return [row for row in rows if row[0] == name and len(row) > 1 and row[1] == tag]

    def wait_output(self, path: str) -> tuple[int, bytes]:
        """Polls an output endpoint until it stops answering 470 (not ready)."""

        def ready() -> tuple[int, bytes] | None:
            status, _, body = http("GET", f"{self.server.ingress}{path}")
            return None if status == 470 else (status, body)

        return wait_until(ready, POLL_TIMEOUT_S, f"output of {path}")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    directory = tmp_path_factory.mktemp("sdk-endpoints")
    side_effects = directory / "side-effects.log"
    env = {SIDE_EFFECT_LOG_ENV: str(side_effects)}
    examples_port = free_port()
    examples = ManagedProcess(
        "examples.app", [sys.executable, "-m", "examples.app", "--port", str(examples_port)], directory / "examples.log", env
    )
    test_services = ServiceEndpoint("tests.services.duro_sdk_services:app", directory / "test-services.log", env)
    examples.start()
    test_services.start()
    try:
        wait_until(lambda: http("GET", f"http://127.0.0.1:{examples_port}/health")[0] == 200, 30, "examples app")
        test_services.wait_ready()
        yield Endpoints(f"http://127.0.0.1:{examples_port}", test_services.uri, side_effects)
    finally:
        examples.stop()
        test_services.stop()


@pytest.fixture(scope="module", params=["v6", "v7"])
def restate_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RestateServer, str]]:
    reason = RestateServer.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    flavor: str = request.param
    server = RestateServer(tmp_path_factory.mktemp(f"restate-{flavor}"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SERVER_ENV[flavor].items():
            patch.setenv(name, value)
        start_when_ports_free(server)
    try:
        yield server, flavor
    finally:
        server.stop()


def start_when_ports_free(server: RestateServer) -> None:
    """Starts the server, waiting up to PORT_WAIT_TIMEOUT_S while another test's server holds 8080/9070/5122."""
    deadline = time.monotonic() + PORT_WAIT_TIMEOUT_S
    while True:
        try:
            server.start()
            return
        except RuntimeError as error:
            if "is in use" not in str(error):
                raise
            if time.monotonic() > deadline:
                pytest.skip(f"the Restate server cannot start, its fixed ports stayed taken: {error}")
            time.sleep(1)


@pytest.fixture(scope="module", params=["h2c", "http11"])
def deployed(request: pytest.FixtureRequest, restate_server: tuple[RestateServer, str], endpoints: Endpoints) -> Deployed:
    server, flavor = restate_server
    transport: str = request.param
    use_http_11 = transport == "http11"
    suffix = "/http11" if use_http_11 else ""
    for uri in (endpoints.examples_uri + suffix, endpoints.test_services_uri + suffix):
        registered = server.register(uri, use_http_11=use_http_11, force=True)
        status, _, body = http("GET", f"{server.admin}/deployments/{registered['id']}")
        assert status == 200, body
        expected_mode = "RequestResponse" if use_http_11 else "BidiStream"
        assert json.loads(body)["protocol_type"] == expected_mode
    return Deployed(server, endpoints.side_effects, flavor, transport)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- the seed examples -------------------------------------------------------------------


def test_subscription_add_runs_each_side_effect_once(deployed: Deployed) -> None:
    user_id = unique("user")
    request = {"user_id": user_id, "credit_card": user_id + "-card", "subscriptions": ["netflix", "disney"]}

    status, _, body = deployed.call("/SubscriptionService/add", request)

    assert status == 200, body
    assert len(deployed.side_effect_lines("create_recurring_payment", user_id + "-card")) == 1
    subscriptions = deployed.side_effect_lines("create_subscription", user_id)
    assert sorted(row[2] for row in subscriptions) == ["disney", "netflix"]
    assert len({row[3] for row in subscriptions}) == 1, "both subscriptions use the one payment reference"


def test_cart_add_item_twice_then_total(deployed: Deployed) -> None:
    cart = unique("cart")

    first = deployed.call(f"/ShoppingCart/{cart}/add_item", {"product_id": "a", "price": 2.5, "quantity": 2})
    second = deployed.call(f"/ShoppingCart/{cart}/add_item", {"product_id": "b", "price": 1.25, "quantity": 4})
    status, _, total = deployed.call(f"/ShoppingCart/{cart}/get_total")

    assert first[0] == 200 and second[0] == 200
    assert len(json.loads(second[2])["items"]) == 2
    assert status == 200
    assert json.loads(total) == pytest.approx(10.0)


def test_signup_workflow_completes_after_click_with_secret(deployed: Deployed) -> None:
    user_id = unique("signup")
    email = user_id + "@example.com"

    status, _, body = deployed.call(f"/UserSignup/{user_id}/run/send", {"name": "Ada", "email": email})
    assert status == 202, body
    mails = wait_until(lambda: deployed.side_effect_lines("send_verification_email", email), POLL_TIMEOUT_S, "the mail")
    secret = mails[0][2]
    click_status, _, click_body = deployed.call(f"/UserSignup/{user_id}/click", secret)
    output_status, output = deployed.wait_output(f"/restate/workflow/UserSignup/{user_id}/output")

    assert click_status == 200, click_body
    assert (output_status, json.loads(output)) == (200, True)
    assert len(deployed.side_effect_lines("create_user_entry", user_id)) == 1
    assert len(mails) == 1


# --- the SDK test services ---------------------------------------------------------------


def test_sleep_waits_durably(deployed: Deployed) -> None:
    started = time.monotonic()
    status, _, body = deployed.call("/SdkTestService/sleep_then_answer", 300)

    assert (status, json.loads(body)) == (200, "slept")
    assert time.monotonic() - started >= 0.3


def test_awakeable_resolved_over_http(deployed: Deployed) -> None:
    tag = unique("awk")
    status, _, body = deployed.call("/SdkTestService/await_awakeable/send", tag)
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]
    published = wait_until(lambda: deployed.side_effect_lines("awakeable", tag), POLL_TIMEOUT_S, "the awakeable id")
    awakeable_id = published[0][2]

    resolve_status, _, resolve_body = http("POST", f"{deployed.server.ingress}/restate/awakeables/{awakeable_id}/resolve", "hello")
    output_status, output = deployed.wait_output(f"/restate/invocation/{invocation_id}/output")

    assert awakeable_id.startswith("sign_1")
    assert resolve_status in (200, 202), resolve_body
    assert (output_status, json.loads(output)) == (200, "resolved with hello")


def test_run_failing_twice_then_succeeding_is_retried(deployed: Deployed) -> None:
    tag = unique("flaky")

    status, headers, body = deployed.call("/SdkTestService/flaky_run", tag)

    assert (status, json.loads(body)) == (200, 3)
    assert [row[2] for row in deployed.side_effect_lines("flaky", tag)] == ["1", "2", "3"]
    assert pinned_protocol_version(deployed, headers["x-restate-id"]) == EXPECTED_PROTOCOL_VERSION[deployed.flavor]


def test_run_out_of_attempts_becomes_terminal(deployed: Deployed) -> None:
    tag = unique("exhausted")

    status, _, body = deployed.call("/SdkTestService/exhausted_run", tag)

    assert status == 200, body
    assert json.loads(body).startswith("gave up: RuntimeError")
    assert len(deployed.side_effect_lines("always_failing", tag)) == 3


def test_terminal_error_maps_to_its_status_code(deployed: Deployed) -> None:
    status, _, body = deployed.call("/SdkTestService/fail_with", 418)

    assert status == 418
    assert json.loads(body)["message"] == "failed on purpose with 418"


def test_call_to_another_deployments_object(deployed: Deployed) -> None:
    cart = unique("called-cart")
    deployed.call(f"/ShoppingCart/{cart}/add_item", {"product_id": "x", "price": 3.0, "quantity": 3})

    status, _, body = deployed.call("/SdkTestService/total_of_cart", cart)

    assert (status, json.loads(body)) == (200, pytest.approx(9.0))


def test_state_keys_and_clear_all(deployed: Deployed) -> None:
    counter = unique("counter")
    deployed.call(f"/SdkTestCounter/{counter}/increment", 2)
    _, _, second = deployed.call(f"/SdkTestCounter/{counter}/increment", 5)

    reset_status, _, keys = deployed.call(f"/SdkTestCounter/{counter}/reset")
    _, _, after_reset = deployed.call(f"/SdkTestCounter/{counter}/increment", 1)

    assert json.loads(second) == 7
    assert (reset_status, json.loads(keys)) == (200, ["count", "last_delta"])
    assert json.loads(after_reset) == 1


def test_cancellation_fails_with_409_after_compensation(deployed: Deployed) -> None:
    tag = unique("cancel")
    status, _, body = deployed.call("/SdkTestService/sleep_until_cancelled/send", tag)
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]
    wait_until(lambda: invocation_status(deployed, invocation_id) in ("running", "suspended"), POLL_TIMEOUT_S, "the sleep")

    cancel_status, _, cancel_body = http("PATCH", f"{deployed.server.admin}/invocations/{invocation_id}/cancel")
    output_status, output = deployed.wait_output(f"/restate/invocation/{invocation_id}/output")

    assert cancel_status in (200, 202), cancel_body
    assert output_status == 409, output
    assert [row[2] for row in deployed.side_effect_lines("cancelled", tag)] == ["409"]


def sql(deployed: Deployed, query: str) -> list[dict[str, object]]:
    status, _, body = http("POST", f"{deployed.server.admin}/query", {"query": query}, headers={"accept": "application/json"})
    assert status == 200, body
    return json.loads(body)["rows"]  # type: ignore[no-any-return]


def invocation_status(deployed: Deployed, invocation_id: str) -> str | None:
    rows = sql(deployed, f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'")
    return str(rows[0]["status"]) if rows else None


def pinned_protocol_version(deployed: Deployed, invocation_id: str) -> int:
    rows = sql(deployed, f"SELECT pinned_service_protocol_version FROM sys_invocation WHERE id = '{invocation_id}'")
    return int(rows[0]["pinned_service_protocol_version"])  # type: ignore[call-overload]
