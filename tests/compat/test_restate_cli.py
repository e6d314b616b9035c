"""The official `restate` CLI (npm `@restatedev/restate`) against `duro serve`: every command that needs no Restate Cloud.

Every test runs twice: with the official Python SDK and with duro's SDK serving the services.

The CLI comes from tests/compat/typescript/package.json (installed by
scripts/setup). It talks to duro's admin API only, picked by
`RESTATE_ADMIN_URL`; the endpoint is the Python reference services. Each test
checks the CLI's exit code and output and, where the command changes
something, the outcome through the admin or ingress API.

Many commands read through SQL (`POST /v4/query`: JSON rows, or an Arrow IPC
stream for counts and `restate sql`), answered by DataFusion over duro's tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kafka_topics import create_topic, produce
from tests.processes import DuroServer, ServiceEndpoint, http, wait_until

CLI = Path(__file__).resolve().parent / "typescript" / "node_modules" / ".bin" / "restate"
CLI_TIMEOUT_S = 60.0
SERVICES = (
    "Greeter",
    "Counter",
    "Steps",
    "Recorder",
    "Durable",
    "Signup",
    "Stalling",
    "Deadlock",
    "Retries",
    "SubscriptionService",
    "ShoppingCart",
    "UserSignup",
)

pytestmark = pytest.mark.skipif(
    not CLI.exists(),
    reason=f"the restate CLI is not installed ({CLI} missing): run scripts/setup",
)


@dataclass(frozen=True)
class CliRun:
    returncode: int
    output: str  # stdout and stderr together, as a user sees them


@dataclass(frozen=True)
class Setup:
    duro: DuroServer
    endpoint: ServiceEndpoint
    side_effects: Path
    config_home: Path

    def restate(self, *args: str, env: dict[str, str] | None = None) -> CliRun:
        env = {
            **os.environ,
            "RESTATE_ADMIN_URL": self.duro.admin,
            "RESTATE_CLI_CONFIG_HOME": str(self.config_home),
            "NO_COLOR": "1",
            **(env or {}),
        }
        result = subprocess.run(
            [str(CLI), *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        return CliRun(result.returncode, result.stdout + result.stderr)

    def deployments(self) -> list[dict]:
        status, _, body = http("GET", f"{self.duro.admin}/deployments")
        assert status == 200, body
        return json.loads(body)["deployments"]

    def side_effect_lines(self, prefix: str) -> list[str]:
        if not self.side_effects.exists():
            return []
        return [line for line in self.side_effects.read_text().splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module", params=["restate", "sdk"], ids=["official-python-sdk", "duro-sdk"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """duro and the reference services, written once and served by the official Python SDK or by duro's SDK."""
    tmp = tmp_path_factory.mktemp("restate-cli")
    side_effects = tmp / "side-effects.log"
    endpoint = ServiceEndpoint(
        "tests.services.official_python:app",
        tmp / "service.log",
        {"DURO_TEST_SIDE_EFFECTS": str(side_effects), "DURO_TEST_SDK": request.param},
    )
    duro = DuroServer(tmp / "data", tmp / "duro.log")
    endpoint.start()
    duro.start()
    try:
        endpoint.wait_ready()
        duro.wait_ready()
        yield Setup(duro, endpoint, side_effects, tmp / "cli-config")
    finally:
        duro.stop()
        endpoint.stop()


@pytest.fixture(scope="module")
def registered(setup: Setup) -> tuple[CliRun, dict]:
    """The first `restate deployments register`, and the deployment it created."""
    run = setup.restate("deployments", "register", setup.endpoint.uri, "--yes")
    assert run.returncode == 0, run.output
    deployments = setup.deployments()
    assert len(deployments) == 1, deployments
    return run, deployments[0]


def _blocked_invocation(setup: Setup) -> str:
    """Starts `Steps/wait_awakeable` (it waits forever) and returns its id once it is waiting."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    status, _, body = http("POST", f"{setup.duro.ingress}/Steps/wait_awakeable/send", name)
    assert status == 202, body
    wait_until(
        lambda: setup.side_effect_lines(f"awakeable {name} "),
        20,
        "the invocation to wait on its awakeable",
    )
    return str(json.loads(body)["invocationId"])


def test_register_adds_the_deployment_with_its_services(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    run, deployment = registered
    assert deployment["uri"].rstrip("/") == setup.endpoint.uri
    assert f"Deployment ID:  {deployment['id']}" in run.output
    assert "SERVICES THAT WILL BE ADDED" in run.output
    for service in SERVICES:
        assert service in run.output
    assert sorted(s["name"] for s in deployment["services"]) == sorted(SERVICES)


def test_register_again_changes_nothing(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _, deployment = registered
    run = setup.restate("deployments", "register", setup.endpoint.uri, "--yes")
    assert run.returncode == 0, run.output
    assert f"Deployment already exists with id {deployment['id']}" in run.output
    assert [d["id"] for d in setup.deployments()] == [deployment["id"]]


def test_force_register_overwrites_the_same_deployment(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _, deployment = registered
    run = setup.restate("deployments", "register", setup.endpoint.uri, "--yes", "--force")
    assert run.returncode == 0, run.output
    assert "already known to the server" in run.output
    assert f"Deployment ID:  {deployment['id']}" in run.output
    assert [d["id"] for d in setup.deployments()] == [deployment["id"]]


def test_force_register_gives_the_services_a_new_revision(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    def revision() -> int:
        status, _, body = http("GET", f"{setup.duro.admin}/services/Counter")
        assert status == 200, body
        return int(json.loads(body)["revision"])

    before = revision()
    run = setup.restate("deployments", "register", setup.endpoint.uri, "--yes", "--force")
    assert run.returncode == 0, run.output
    assert revision() == before + 1
    assert f"Revision: {before} -> {before + 1}" in run.output


def test_services_list_names_every_service(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _, deployment = registered
    run = setup.restate("services", "list")
    assert run.returncode == 0, run.output
    for service in SERVICES:
        assert service in run.output
    assert run.output.count(deployment["id"]) == len(SERVICES)


def test_deployments_list_shows_the_deployment(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _, deployment = registered
    run = setup.restate("deployments", "list")
    assert run.returncode == 0, run.output
    assert deployment["id"] in run.output
    assert setup.endpoint.uri in run.output
    for service in SERVICES:
        assert f"- {service} [" in run.output


def test_services_describe_shows_type_deployment_and_handlers(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _, deployment = registered
    run = setup.restate("services", "describe", "Counter")
    assert run.returncode == 0, run.output
    assert "VirtualObject" in run.output
    assert deployment["id"] in run.output
    assert "Bidirectional Stream" in run.output
    handler_rows = {line.split()[0] for line in run.output.splitlines() if line.strip().startswith(("add ", "get ", "reset "))}
    assert handler_rows == {"add", "get", "reset"}


def test_describe_of_an_unknown_service_fails(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    run = setup.restate("services", "describe", "Nope")
    assert run.returncode != 0
    assert "Nope" in run.output


def test_cancel_a_blocked_invocation(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    invocation_id = _blocked_invocation(setup)
    run = setup.restate("invocations", "cancel", invocation_id, "--yes")
    assert run.returncode == 0, run.output
    assert "Cancelled 1 invocations" in run.output
    status, _, body = http("GET", f"{setup.duro.ingress}/restate/invocation/{invocation_id}/attach")
    assert status == 409, body
    assert json.loads(body)["message"] == "cancelled"


def test_kill_a_blocked_invocation(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    invocation_id = _blocked_invocation(setup)
    run = setup.restate("invocations", "kill", invocation_id, "--yes")
    assert run.returncode == 0, run.output
    assert "Killed 1 invocations" in run.output
    status, _, body = http("GET", f"{setup.duro.ingress}/restate/invocation/{invocation_id}/attach")
    assert status == 409, body
    assert json.loads(body)["message"] == "killed"


# ---------------------------------------------------------------- introspection (POST /query on DataFusion, Arrow IPC and JSON)


def _counter_add(setup: Setup, key: str, delta: int) -> str:
    status, headers, body = http("POST", f"{setup.duro.ingress}/Counter/{key}/add", delta)
    assert status == 200, body
    return headers["x-restate-id"]


def test_sql_prints_a_table_of_the_rows(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    invocation_id = _counter_add(setup, "sql-ada", 2)
    run = setup.restate("sql", f"SELECT id, status, target_service_key FROM sys_invocation WHERE id = '{invocation_id}'")
    assert run.returncode == 0, run.output
    (row,) = [line.split() for line in run.output.splitlines() if invocation_id in line]
    assert row == [invocation_id, "completed", "sql-ada"]
    assert "1 rows." in run.output
    run = setup.restate("sql", "--json", "SELECT service_key, key, value_utf8 FROM state WHERE service_key = 'sql-ada'")
    assert run.returncode == 0, run.output
    assert json.loads(run.output[run.output.index("[") : run.output.rindex("]") + 1]) == [
        {"service_key": "sql-ada", "key": "count", "value_utf8": "2"}
    ]


def test_invocations_list_and_describe_show_a_running_invocation(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    invocation_id = _blocked_invocation(setup)
    run = setup.restate("invocations", "list", "--service", "Steps")
    assert run.returncode == 0, run.output
    block = run.output[run.output.index(invocation_id) :].split("❯")[0]
    assert "Steps/wait_awakeable" in block and "running" in block
    run = setup.restate("invocations", "describe", invocation_id)
    assert run.returncode == 0, run.output
    assert "Status:" in run.output and "running" in run.output
    assert "#0 Command: Input" in run.output and "#1 Command: Run [publish]" in run.output
    setup.restate("invocations", "kill", invocation_id, "--yes")


def test_state_get_shows_an_objects_state(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _counter_add(setup, "state-bob", 5)
    run = setup.restate("state", "get", "Counter", "state-bob")
    assert run.returncode == 0, run.output
    assert ["count", "5"] in [line.split() for line in run.output.splitlines()]


def test_services_status_counts_pending_and_running(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    status, _, body = http("POST", f"{setup.duro.ingress}/Durable/status-k/step_sleep_step/send", 600_000)
    assert status == 202, body
    holder = json.loads(body)["invocationId"]
    wait_until(lambda: setup.side_effect_lines("charge status-k"), 20, "the first invocation to hold the key")
    status, _, body = http("POST", f"{setup.duro.ingress}/Durable/status-k/step_sleep_step/send", 1)
    assert status == 202, body
    queued = json.loads(body)["invocationId"]
    run = setup.restate("services", "status", "Durable")
    assert run.returncode == 0, run.output
    (handler_row,) = [line.split() for line in run.output.splitlines() if line.strip().startswith("step_sleep_step")]
    assert handler_row[1] == "1"  # pending: the queued one
    assert "status-k" in run.output and f"{holder} (" in run.output
    for invocation_id in (queued, holder):
        assert setup.restate("invocations", "kill", invocation_id, "--yes").returncode == 0


def test_deployments_list_extra_counts_active_invocations(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _, deployment = registered
    run = setup.restate("deployments", "list", "--extra")
    assert run.returncode == 0, run.output
    (row,) = [line.split() for line in run.output.splitlines() if deployment["id"] in line]
    assert "Active" in row and "ACTIVE-INVOCATIONS" in run.output


def test_kafka_clusters_and_subscriptions_are_created_listed_described_and_deleted(
    setup: Setup, registered: tuple[CliRun, dict], kafka_bootstrap: str
) -> None:
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    run = setup.restate("--yes", "kafka-clusters", "create", "clikafka", f"bootstrap.servers={kafka_bootstrap}")
    assert run.returncode == 0, run.output
    run = setup.restate("kafka-clusters", "list")
    assert run.returncode == 0 and "clikafka" in run.output and kafka_bootstrap in run.output, run.output

    source, sink = f"kafka://clikafka/{topic}", "service://Counter/add"
    run = setup.restate("--yes", "subscriptions", "create", source, sink, "auto.offset.reset=earliest")
    assert run.returncode == 0, run.output
    (subscription,) = [s for s in json.loads(http("GET", f"{setup.duro.admin}/subscriptions")[2])["subscriptions"] if s["source"] == source]
    assert f"Subscription {subscription['id']} created" in run.output

    run = setup.restate("subscriptions", "list")
    assert run.returncode == 0, run.output
    assert [subscription["id"], source, sink, "3"] in [line.split() for line in run.output.splitlines()]
    run = setup.restate("subscriptions", "describe", subscription["id"])
    assert run.returncode == 0, run.output
    for expected in (subscription["id"], source, sink, kafka_bootstrap, "auto.offset.reset", "earliest", "group.id"):
        assert expected in run.output, (expected, run.output)

    produce(kafka_bootstrap, topic, [("cli-carol", 4), ("cli-carol", 3)])
    wait_until(lambda: json.loads(http("POST", f"{setup.duro.ingress}/Counter/cli-carol/get")[2]) == 7, 60, "the events to be counted")

    run = setup.restate("--yes", "subscriptions", "delete", subscription["id"])
    assert run.returncode == 0, run.output
    assert f"Subscription {subscription['id']} deleted" in run.output
    assert http("GET", f"{setup.duro.admin}/subscriptions/{subscription['id']}")[0] == 404
    run = setup.restate("--yes", "kafka-clusters", "delete", "clikafka")
    assert run.returncode == 0, run.output
    assert http("GET", f"{setup.duro.admin}/kafka-clusters/clikafka")[0] == 404


# ---------------------------------------------------------------- the invocation lifecycle


def _attach(setup: Setup, invocation_id: str, timeout_s: float = 30.0) -> tuple[int, bytes]:
    status, _, body = http("GET", f"{setup.duro.ingress}/restate/invocation/{invocation_id}/attach", timeout_s=timeout_s)
    return status, body


def test_killing_a_deadlocked_object_kills_its_self_call_and_lets_queued_work_through(
    setup: Setup, registered: tuple[CliRun, dict]
) -> None:
    key = f"dl-{uuid.uuid4().hex[:6]}"
    status, _, body = http("POST", f"{setup.duro.ingress}/Deadlock/{key}/call_self/send", "root")
    assert status == 202, body
    root = json.loads(body)["invocationId"]
    wait_until(lambda: setup.side_effect_lines(f"deadlock {key} root"), 20, "the root call to run")
    status, _, body = http("POST", f"{setup.duro.ingress}/Deadlock/{key}/echo/send", "after")
    assert status == 202, body
    queued = json.loads(body)["invocationId"]
    run = setup.restate("sql", "--json", f"SELECT cycle_ids, failed FROM sys_deadlock WHERE cycle LIKE 'Deadlock/{key}/%'")
    (reported,) = json.loads(run.output[run.output.index("[") : run.output.rindex("]") + 1])
    assert reported["failed"] is False and reported["cycle_ids"][0] == root == reported["cycle_ids"][-1], "reported, not failed"
    run = setup.restate("invocations", "kill", root, "--yes")
    assert run.returncode == 0, run.output
    assert _attach(setup, queued) == (200, b'"after"'), "the queued echo ran once the deadlock was killed"
    assert setup.side_effect_lines(f"deadlock {key} root-child") == [], "the self-call was killed before it ran"
    status, body = _attach(setup, root)
    assert status == 409 and json.loads(body)["message"] == "killed"


def test_pause_then_resume_with_the_cli(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    invocation_id = _blocked_invocation(setup)
    run = setup.restate("invocations", "pause", invocation_id, "--yes")
    assert run.returncode == 0, run.output
    assert "Paused 1 invocations" in run.output
    run = setup.restate("sql", f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'")
    assert "paused" in run.output.split(), run.output
    status, _, body = http("PATCH", f"{setup.duro.admin}/invocations/{invocation_id}/pause")
    assert status == 200, body  # already paused
    run = setup.restate("invocations", "resume", invocation_id, "--yes")
    assert run.returncode == 0, run.output
    assert "Resumed 1 invocations" in run.output
    wait_until(
        lambda: "running" in setup.restate("sql", f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'").output.split(),
        20,
        "the resumed invocation to run again",
    )
    setup.restate("invocations", "kill", invocation_id, "--yes")


def test_restart_as_new_reruns_a_completed_invocation(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    key = f"ran-{uuid.uuid4().hex[:6]}"
    invocation_id = _counter_add(setup, key, 4)
    run = setup.restate("invocations", "restart-as-new", invocation_id, "--yes")
    assert run.returncode == 0, run.output
    assert "Restarted 1 invocations" in run.output
    (new_id,) = [word for word in run.output.split() if word.startswith("inv_") and word != invocation_id]
    assert _attach(setup, new_id) == (200, b"8"), "the same input added once more"
    rows = setup.restate("sql", "--json", f"SELECT invoked_by, restarted_from FROM sys_invocation WHERE id = '{new_id}'").output
    assert json.loads(rows[rows.index("[") : rows.rindex("]") + 1]) == [{"invoked_by": "restart_as_new", "restarted_from": invocation_id}]


def test_admin_lifecycle_paths_answer_restates_status_codes(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    admin = setup.duro.admin
    done = _counter_add(setup, f"codes-{uuid.uuid4().hex[:6]}", 1)
    assert http("PATCH", f"{admin}/invocations/{done}/pause")[0] == 409
    assert http("PATCH", f"{admin}/invocations/{done}/resume")[0] == 409
    assert http("PATCH", f"{admin}/invocations/{done}/purge-journal")[0] == 200
    status, _, body = http("PATCH", f"{admin}/invocations/{done}/restart-as-new")
    assert status == 410 and b"input is not available" in body
    running = _blocked_invocation(setup)
    assert http("PATCH", f"{admin}/invocations/{running}/purge-journal")[0] == 409
    assert http("PATCH", f"{admin}/invocations/{running}/restart-as-new")[0] == 409
    assert http("PATCH", f"{admin}/invocations/{running}/resume?deployment=nope")[0] == 400
    assert http("PATCH", f"{admin}/invocations/{running}/resume?deployment=latest")[0] == 409  # running: cannot move
    assert http("PATCH", f"{admin}/invocations/{running}/pause")[0] == 202
    assert http("PATCH", f"{admin}/invocations/{running}/resume?deployment=latest")[0] == 200
    assert http("PATCH", f"{admin}/invocations/{running}/cancel")[0] == 202
    assert _attach(setup, running)[0] == 409
    assert http("PATCH", f"{admin}/invocations/{done}/purge")[0] == 200
    assert http("PATCH", f"{admin}/invocations/{done}/pause")[0] == 404


# ---------------------------------------------------------------- configuration and state at runtime


def _service(setup: Setup, name: str) -> dict:
    status, _, body = http("GET", f"{setup.duro.admin}/services/{name}")
    assert status == 200, body
    return dict(json.loads(body))


def test_services_config_view_and_patch(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    run = setup.restate("services", "config", "view", "Greeter")
    assert run.returncode == 0, run.output
    lines = [line.split() for line in run.output.splitlines()]
    assert ["Initial", "interval:", "500ms"] in lines and ["Max", "interval:", "1m"] in lines, run.output
    run = setup.restate("--yes", "services", "config", "patch", "Greeter", "--inactivity-timeout", "2m", "--idempotency-retention", "3h")
    assert run.returncode == 0, run.output
    service = _service(setup, "Greeter")
    assert service["inactivity_timeout"] == "2m" and service["idempotency_retention"] == "3h"
    assert ["Inactivity", "timeout:", "2m"] in [
        line.split() for line in setup.restate("services", "config", "view", "Greeter").output.splitlines()
    ]
    status, _, body = http("POST", f"{setup.duro.ingress}/Greeter/greet", "cfg", {"idempotency-key": "cfg-1"})
    assert status == 200, body
    # the new retention reaches new invocations: the outcome is kept 3 h
    run = setup.restate("sql", "--json", "SELECT completion_retention FROM sys_invocation WHERE idempotency_key = 'cfg-1'")
    assert '"PT10800S"' in run.output, run.output
    run = setup.restate("--yes", "services", "config", "patch", "Greeter", "--public", "false")
    assert run.returncode == 0, run.output
    assert http("POST", f"{setup.duro.ingress}/Greeter/greet", "private")[0] == 400  # private: not callable from the ingress
    assert setup.restate("--yes", "services", "config", "patch", "Greeter", "--public", "true").returncode == 0
    assert http("POST", f"{setup.duro.ingress}/Greeter/greet", "public")[0] == 200


def test_services_config_edit_through_the_editor(setup: Setup, registered: tuple[CliRun, dict], tmp_path: Path) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf \'abort_timeout = "7m"\\n\' > "$1"\n')
    editor.chmod(0o755)
    env = {"EDITOR": str(editor), "VISUAL": str(editor)}
    run = setup.restate("--yes", "services", "config", "edit", "Counter", env=env)
    assert run.returncode == 0, run.output
    assert _service(setup, "Counter")["abort_timeout"] == "7m"


def test_state_edit_patch_and_clear(setup: Setup, registered: tuple[CliRun, dict], tmp_path: Path) -> None:
    key = f"st-{uuid.uuid4().hex[:6]}"
    _counter_add(setup, key, 5)
    run = setup.restate("--yes", "state", "patch", "Counter", key, "--patch", '[{"op": "replace", "path": "/count", "value": 41}]')
    assert run.returncode == 0, run.output
    wait_until(lambda: json.loads(http("POST", f"{setup.duro.ingress}/Counter/{key}/get")[2]) == 41, 10, "the patched state")
    assert _counter_add(setup, key, 1) and json.loads(http("POST", f"{setup.duro.ingress}/Counter/{key}/get")[2]) == 42
    editor = tmp_path / "state-editor.sh"
    editor.write_text('#!/bin/sh\nprintf \'{"count": 100, "note": "edited"}\' > "$1"\n')
    editor.chmod(0o755)
    run = setup.restate("--yes", "state", "edit", "Counter", key, env={"EDITOR": str(editor), "VISUAL": str(editor)})
    assert run.returncode == 0, run.output
    wait_until(lambda: json.loads(http("POST", f"{setup.duro.ingress}/Counter/{key}/get")[2]) == 100, 10, "the edited state")
    got = setup.restate("state", "get", "Counter", key)
    assert ["note", '"edited"'] in [line.split() for line in got.output.splitlines()], got.output
    run = setup.restate("--yes", "state", "clear", f"Counter/{key}")
    assert run.returncode == 0, run.output
    wait_until(lambda: json.loads(http("POST", f"{setup.duro.ingress}/Counter/{key}/get")[2]) == 0, 10, "the cleared state")


def test_state_patch_with_a_stale_version_changes_nothing_and_says_so(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    key = f"sv-{uuid.uuid4().hex[:6]}"
    _counter_add(setup, key, 3)
    stale = {"object_key": key, "version": "not-the-version", "new_state": {"count": list(b"99")}}
    status, _, body = http("POST", f"{setup.duro.admin}/services/Counter/state", stale)
    assert status == 409 and "no longer not-the-version" in json.loads(body)["message"], body  # Restate: 202, dropped silently
    assert json.loads(http("POST", f"{setup.duro.ingress}/Counter/{key}/get")[2]) == 3
    assert http("POST", f"{setup.duro.admin}/services/Greeter/state", {"object_key": "x", "new_state": {"a": [1]}})[0] == 400
    assert http("POST", f"{setup.duro.admin}/services/Nope/state", {"object_key": "x", "new_state": {"a": [1]}})[0] == 404


def test_openapi_describes_each_public_handler(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    status, _, body = http("GET", f"{setup.duro.admin}/services/Counter/openapi")
    assert status == 200, body
    document = json.loads(body)
    assert document["openapi"].startswith("3.1")
    assert {"/Counter/{key}/add", "/Counter/{key}/add/send", "/Counter/{key}/get", "/Counter/{key}/reset"} <= set(document["paths"])
    add = document["paths"]["/Counter/{key}/add"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"] == {"type": "integer"}
    assert http("GET", f"{setup.duro.admin}/services/Nope/openapi")[0] == 404


def test_deployments_describe_update_and_whoami(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    _, deployment = registered
    run = setup.restate("deployments", "describe", deployment["id"])
    assert run.returncode == 0, run.output
    assert deployment["id"] in run.output and "Counter" in run.output
    status, _, body = http("PATCH", f"{setup.duro.admin}/deployments/{deployment['id']}", {"additional_headers": {"x-duro-test": "1"}})
    assert status == 200, body
    assert json.loads(body)["additional_headers"] == {"x-duro-test": "1"}
    status, _, body = http(
        "PATCH", f"{setup.duro.admin}/deployments/{deployment['id']}", {"uri": setup.endpoint.uri, "additional_headers": {}}
    )
    assert status == 200, body
    updated = json.loads(body)
    assert updated["id"] == deployment["id"] and "additional_headers" not in updated
    assert http("PATCH", f"{setup.duro.admin}/deployments/dp_1nope", {})[0] == 404
    assert _counter_add(setup, f"after-patch-{uuid.uuid4().hex[:4]}", 1)
    run = setup.restate("whoami")
    assert run.returncode == 0, run.output
    assert setup.duro.admin in run.output


def test_invocations_purge_and_list_filters(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    key = f"purge-{uuid.uuid4().hex[:6]}"
    done = _counter_add(setup, key, 1)
    running = _blocked_invocation(setup)
    run = setup.restate("invocations", "list", "--status", "completed", "--key", key)
    assert run.returncode == 0 and done in run.output and running not in run.output, run.output
    run = setup.restate("invocations", "list", "--status", "running", "--service", "Steps")
    assert run.returncode == 0 and running in run.output and done not in run.output, run.output
    run = setup.restate("invocations", "list", "--handler", "add", "--status", "completed")
    assert run.returncode == 0 and done in run.output, run.output
    run = setup.restate("invocations", "purge", done, "--yes")
    assert run.returncode == 0 and "Purged 1 invocations" in run.output, run.output
    assert http("GET", f"{setup.duro.ingress}/restate/invocation/{done}/attach")[0] == 404
    setup.restate("invocations", "kill", running, "--yes")


def test_deployments_register_and_remove_a_second_endpoint(setup: Setup, registered: tuple[CliRun, dict], tmp_path: Path) -> None:
    _, first = registered
    revision = _service(setup, "Counter")["revision"]
    second = ServiceEndpoint(
        "tests.services.official_python:app", tmp_path / "second.log", {"DURO_TEST_SIDE_EFFECTS": str(setup.side_effects)}
    )
    second.start()
    try:
        second.wait_ready()
        run = setup.restate("deployments", "register", second.uri, "--yes")
        assert run.returncode == 0, run.output
        (added,) = [d for d in setup.deployments() if d["id"] != first["id"]]
        assert _service(setup, "Counter")["revision"] == revision + 1 and _service(setup, "Counter")["deployment_id"] == added["id"]
        run = setup.restate("deployments", "remove", added["id"], "--yes")
        assert run.returncode != 0 or [d["id"] for d in setup.deployments()] == [first["id"]], run.output
        run = setup.restate("deployments", "remove", added["id"], "--yes", "--force")
        assert run.returncode == 0, run.output
        assert [d["id"] for d in setup.deployments()] == [first["id"]]
        assert _service(setup, "Counter")["deployment_id"] == first["id"], "the first deployment serves Counter again"
        assert _counter_add(setup, f"after-remove-{uuid.uuid4().hex[:4]}", 1)
    finally:
        second.stop()


def test_invocations_describe_details_sleep_and_state_entries(setup: Setup, registered: tuple[CliRun, dict]) -> None:
    key = f"desc-{uuid.uuid4().hex[:6]}"
    status, _, body = http("POST", f"{setup.duro.ingress}/Durable/{key}/step_sleep_step/send", 600_000)
    assert status == 202, body
    invocation_id = json.loads(body)["invocationId"]

    def described() -> str | None:
        run = setup.restate("invocations", "describe", invocation_id)
        return run.output if "Command: Sleep until" in run.output else None

    output = wait_until(described, 30, "the sleep to be journaled")
    assert "Command: SetState key status" in output, output
    setup.restate("invocations", "kill", invocation_id, "--yes")
