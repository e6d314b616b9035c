"""The official TypeScript ingress client (`@restatedev/restate-sdk-clients`) against `duro serve`.

`tests/compat/typescript/src/ingress_client_check.ts` (compiled by
scripts/setup) calls handlers, sends with and without an idempotency key,
attaches to sent invocations, resolves an awakeable, submits a workflow and
reads its output, all through the client, and prints a JSON summary; the
tests below assert its values. The services are the Python reference
(`tests/services/official_python.py`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import DuroServer, ServiceEndpoint

CHECK_SCRIPT = Path(__file__).resolve().parent / "typescript" / "dist" / "ingress_client_check.js"
CHECK_TIMEOUT_S = 180.0

pytestmark = pytest.mark.skipif(
    not CHECK_SCRIPT.exists(),
    reason=f"the TypeScript ingress-client check is not built ({CHECK_SCRIPT} missing): run scripts/setup",
)


def _count_lines(path: Path, prefix: str) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.startswith(prefix))


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], Path]]:
    """The check's JSON summary from one run against a fresh duro, and the side-effects file."""
    tmp = tmp_path_factory.mktemp("ts-ingress-client")
    side_effects = tmp / "side-effects.log"
    endpoint = ServiceEndpoint(
        "tests.services.official_python:app",
        tmp / "service.log",
        {"DURO_TEST_SIDE_EFFECTS": str(side_effects)},
    )
    duro = DuroServer(tmp / "data", tmp / "duro.log")
    endpoint.start()
    duro.start()
    try:
        endpoint.wait_ready()
        duro.wait_ready()
        duro.register(endpoint.uri)
        node = shutil.which("node") or "node"
        args = [
            node,
            str(CHECK_SCRIPT),
            "--ingress",
            duro.ingress,
            "--side-effects",
            str(side_effects),
            "--run-id",
            uuid.uuid4().hex[:8],
        ]
        result = subprocess.run(
            args,
            check=False,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n--- duro log ---\n{duro.log_tail()}"
        yield json.loads(result.stdout), side_effects
    finally:
        duro.stop()
        endpoint.stop()


@pytest.fixture(scope="module")
def summary(run: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    return run[0]


def test_calls_return_the_handlers_outputs(summary: dict[str, Any]) -> None:
    assert summary["greet"] == "Hello typescript!"
    assert (
        summary["counter_add"],
        summary["counter_add_again"],
        summary["counter_get"],
    ) == (3, 7, 7)


def test_a_call_with_an_idempotency_key_runs_once(summary: dict[str, Any]) -> None:
    assert summary["idempotent_call"] == {"first": 5, "second": 5, "total": 5}


def test_a_terminal_error_reaches_the_client_with_its_status(
    summary: dict[str, Any],
) -> None:
    failure = summary["terminal_error"]
    assert failure["status"] == 418, failure
    assert json.loads(failure["body"])["message"] == "no such user"


def test_a_handler_without_input_rejects_the_clients_json_content_type(
    summary: dict[str, Any],
) -> None:
    """The client sends `content-type: application/json` for a no-argument call unless told otherwise; Restate answers 400, and so must duro."""
    failure = summary["no_input_handler_with_json_content_type"]
    assert failure["status"] == 400, failure
    assert json.loads(failure["body"])["source"] == "ingress"


def test_sends_without_idempotency_key_get_fresh_ids(summary: dict[str, Any]) -> None:
    first, second = summary["send_plain"]["first"], summary["send_plain"]["second"]
    assert first["status"] == second["status"] == "Accepted"
    assert first["invocationId"].startswith("inv_1") and second["invocationId"].startswith("inv_1")
    assert first["invocationId"] != second["invocationId"]
    assert first["attachable"] is False


def test_sends_with_one_idempotency_key_share_the_invocation_and_attach(
    summary: dict[str, Any],
) -> None:
    sent = summary["send_idempotent"]
    assert (sent["first"]["status"], sent["second"]["status"]) == (
        "Accepted",
        "PreviouslyAccepted",
    )
    assert sent["first"]["invocationId"] == sent["second"]["invocationId"]
    assert sent["attached"] == "slept"


def test_a_delayed_send_runs_after_its_delay(summary: dict[str, Any]) -> None:
    delayed = summary["delayed_send"]
    assert delayed["send"]["status"] == "Accepted", delayed
    assert delayed["before"] == []
    assert delayed["after"] == [7]
    assert delayed["elapsed_ms"] >= 300


def test_an_awakeable_resolved_by_the_client_completes_the_invocation(
    summary: dict[str, Any],
) -> None:
    awakeable = summary["awakeable"]
    assert awakeable["awakeable_id"].startswith("sign_1"), awakeable
    assert awakeable["result"] == "woken by the ts client"


def test_a_workflow_submits_once_and_its_output_becomes_ready(
    run: tuple[dict[str, Any], Path],
) -> None:
    summary, side_effects = run
    workflow = summary["workflow"]
    expected = "ts@example.com verified with s3cret"
    assert workflow["submit"]["status"] == "Accepted", workflow
    assert workflow["resubmit"]["status"] == "PreviouslyAccepted"
    assert workflow["submit"]["invocationId"] == workflow["resubmit"]["invocationId"]
    assert workflow["output_before_click"] == {"ready": False}
    assert workflow["click"] is None
    assert workflow["attach"] == expected
    assert workflow["output_after"] == {"ready": True, "result": expected}
    assert workflow["result_by_submission"]["result"] == expected
    assert workflow["result_by_submission"]["submission"]["invocationId"] == workflow["submit"]["invocationId"]
    assert _count_lines(side_effects, f"signup-create {workflow['key']}") == 1
