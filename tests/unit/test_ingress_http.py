"""Tests of the HTTP ingress app against a MemoryLog and a scripted partition stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from ingress_fakes import FakePartitions, default_responder, make_registry

from ingress.http import IngressApp, build_ingress_app
from ingress.registry import Registry
from ingress.settings import IngressSettings
from protocol.ids import InvocationId, format_awakeable_id
from protocol.routing import (
    idempotent_invocation_id,
    partition_key_for_key,
    partition_key_of,
    workflow_invocation_id,
)
from wal.log import AppendNotSentError, AppendOutcomeUnknownError, LogClosedError, LogError
from wal.memory import MemoryLog
from wal.partitioner import partition_of
from wal.records import DEFAULT_RETRY_POLICY, Failure, HandlerKind, Invoke, Outcome, ServiceType, Signal
from wal.replies import ReplyBus

PARTITIONS = 4


@dataclass
class Env:
    client: httpx.AsyncClient
    log: MemoryLog
    bus: ReplyBus
    fake: FakePartitions
    registry: Registry
    app: IngressApp


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with _env(IngressSettings(max_body_bytes=1024, submit_timeout_ms=2_000, call_timeout_ms=5_000)) as e:
        yield e


class _env:
    def __init__(self, settings: IngressSettings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Env:
        log = MemoryLog(PARTITIONS)
        bus = ReplyBus(node_id=1)
        registry = await make_registry()
        self.fake = FakePartitions(log, bus, default_responder)
        await self.fake.__aenter__()
        app = build_ingress_app(log, registry, bus, self.settings)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress", timeout=10)
        return Env(self.client, log, bus, self.fake, registry, app)

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.fake.__aexit__()


async def test_call_returns_output_with_manifest_content_type_and_id(env: Env) -> None:
    response = await env.client.post("/Greeter/greet", content=b'"bob"', headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.content == b'"hello bob"'
    assert response.headers["content-type"] == "application/json"
    invocation_id = response.headers["x-restate-id"]
    await env.fake.settled()
    [invoke] = env.fake.bodies(Invoke)
    assert invoke.invocation_id == invocation_id
    assert invoke.target.service == "Greeter" and invoke.target.key is None
    assert invoke.target.service_type is ServiceType.SERVICE and invoke.target.handler_kind is None
    assert invoke.response_sink is not None and invoke.submit_sink is None
    journal_ms = IngressSettings().default_journal_retention_ms
    assert journal_ms == 24 * 3_600_000, "Restate's default journal retention"
    assert (invoke.completion_retention_ms, invoke.journal_retention_ms) == (journal_ms, journal_ms)
    assert invoke.retry_policy == DEFAULT_RETRY_POLICY  # the node's policy travels in the record
    assert "idempotency-expires" not in response.headers
    assert env.bus.waiting_count == 0


async def test_records_go_to_the_partition_of_the_invocation_id(env: Env) -> None:
    for key in ("alice", "bob", "carol", "dave", "erin"):
        response = await env.client.post(f"/Counter/{key}/add", content=b"1", headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
    for partition, record in env.fake.records:
        assert isinstance(record.body, Invoke)
        expected = partition_of(partition_key_for_key(record.body.target.key), PARTITIONS)
        assert partition == expected
        assert partition_key_of(record.body.invocation_id) == partition_key_for_key(record.body.target.key)
    assert len({p for p, _ in env.fake.records}) > 1


async def test_fresh_unkeyed_invocations_go_to_the_partitions_this_process_owns_and_the_others_where_they_must(env: Env) -> None:
    env.app.ingress.local_keys.own({1, 3})  # as the node sets it for worker 1 of 2
    json_body = {"content-type": "application/json"}
    for _ in range(12):
        assert (await env.client.post("/Greeter/greet", content=b'"a"', headers=json_body)).status_code == 200
        assert (await env.client.post("/Greeter/slow/send")).status_code == 202
        assert (await env.client.post("/Greeter/slow/send?delay=1s")).status_code == 202
    await env.fake.settled()
    unkeyed = [(partition, record.body) for partition, record in env.fake.records if isinstance(record.body, Invoke)]
    assert len(unkeyed) == 36 and {partition for partition, _ in unkeyed} == {1, 3}, "only the owned ones, both used"
    assert all(partition == partition_of(partition_key_of(body.invocation_id), PARTITIONS) for partition, body in unkeyed)
    env.fake.records.clear()
    far = next(key for key in (f"k{n}" for n in range(100)) if partition_of(partition_key_for_key(key), PARTITIONS) == 0)
    keyed = await env.client.post(f"/Counter/{far}/add", content=b"1", headers=json_body)
    idempotent = await env.client.post("/Greeter/greet", content=b'"a"', headers={**json_body, "idempotency-key": "i1"})
    assert partition_key_of(keyed.headers["x-restate-id"]) == partition_key_for_key(far), "a keyed call stays on its key's partition"
    assert idempotent.headers["x-restate-id"] == idempotent_invocation_id("Greeter", None, "greet", "i1"), "derived ids stay derived"


async def test_headers_are_forwarded_except_connection_host_and_idempotency_key(env: Env) -> None:
    await env.client.post(
        "/Greeter/echo?x=1",
        content=b"abc",
        headers={"content-type": "text/plain", "x-trace": "t1", "idempotency-key": "k1"},
    )
    await env.fake.settled()
    [invoke] = env.fake.bodies(Invoke)
    names = [name for name, _ in invoke.headers]
    assert ("x-trace", "t1") in invoke.headers
    assert ("x-restate-ingress-path", "/Greeter/echo?x=1") in invoke.headers
    assert "host" not in names and "idempotency-key" not in names
    assert invoke.idempotency_key == "k1"
    assert invoke.body == b"abc"


async def test_get_is_allowed_and_other_methods_are_not(env: Env) -> None:
    assert (await env.client.get("/Greeter/noinput")).status_code == 200
    response = await env.client.put("/Greeter/noinput")
    assert response.status_code == 405


async def test_output_content_type_set_when_empty_if_manifest_asks(env: Env) -> None:
    response = await env.client.post("/Greeter/noinput")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"] == "text/plain"


async def test_call_failure_answers_with_the_failure_code_and_json_body(env: Env) -> None:
    response = await env.client.post("/Greeter/fail")
    assert response.status_code == 422
    assert response.json() == {"code": 422, "message": "no such user", "source": "invocation"}
    assert response.headers["x-restate-error-source"] == "invocation"
    assert response.headers["x-restate-id"].startswith("inv_1")


@pytest.mark.parametrize(("code", "status"), [(409, 409), (570, 570), (99, 500), (1000, 500), (0, 500)])
async def test_failure_codes_are_clamped_to_valid_statuses(env: Env, code: int, status: int) -> None:
    env.fake.responder = lambda invoke: Outcome(failure=Failure(code, "boom"))
    response = await env.client.post("/Greeter/slow")
    assert response.status_code == status
    assert response.json()["code"] == code


async def test_unknown_service_and_handler_are_404_naming_them(env: Env) -> None:
    response = await env.client.post("/Nope/greet")
    assert response.status_code == 404
    assert "'Nope'" in response.json()["message"]
    response = await env.client.post("/Greeter/nope")
    assert response.status_code == 404
    message = response.json()["message"]
    assert "'Greeter'" in message and "'nope'" in message
    assert response.json()["source"] == "ingress"
    assert env.fake.bodies(Invoke) == []


async def test_keyed_service_without_key_and_unkeyed_with_key_are_bad_paths(env: Env) -> None:
    assert (await env.client.post("/Counter/add")).status_code == 400
    assert (await env.client.post("/Greeter/alice/greet")).status_code == 400
    assert (await env.client.post("/Greeter")).status_code == 400
    assert env.fake.bodies(Invoke) == []


async def test_private_handler_is_rejected(env: Env) -> None:
    response = await env.client.post("/Greeter/hidden")
    assert response.status_code == 400
    assert "not public" in response.json()["message"]


async def test_bad_json_is_400_naming_the_problem(env: Env) -> None:
    response = await env.client.post("/Counter/a/add", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]
    assert env.fake.bodies(Invoke) == []


async def test_content_type_rules(env: Env) -> None:
    wrong = await env.client.post("/Counter/a/add", content=b"1", headers={"content-type": "text/plain"})
    assert wrong.status_code == 400 and "does not match" in wrong.json()["message"]
    missing = await env.client.post("/Greeter/needsbody")
    assert missing.status_code == 400 and "content-type" in missing.json()["message"]
    body_for_no_input = await env.client.post("/Greeter/noinput", content=b"x", headers={"content-type": "text/plain"})
    assert body_for_no_input.status_code == 400
    empty_allowed = await env.client.post("/Greeter/greet")
    assert empty_allowed.status_code == 200
    json_empty = await env.client.post("/Counter/a/add", headers={"content-type": "application/json"})
    assert json_empty.status_code == 400 and "empty body" in json_empty.json()["message"]


async def test_body_over_the_limit_is_413() -> None:
    async with _env(IngressSettings(max_body_bytes=10)) as env:
        response = await env.client.post("/Greeter/echo", content=b"x" * 11, headers={"content-type": "text/plain"})
        assert response.status_code == 413
        assert "max_body_bytes" in response.json()["message"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"abcd"

        streamed = await env.client.post("/Greeter/echo", content=chunks(), headers={"content-type": "text/plain"})
        assert streamed.status_code == 413
        ok = await env.client.post("/Greeter/echo", content=b"x" * 10, headers={"content-type": "text/plain"})
        assert ok.status_code == 200
        assert len(env.fake.bodies(Invoke)) == 1


async def test_an_append_with_an_unknown_outcome_is_503_saying_so_without_the_errors_text(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lost(partition: int, entries: object) -> int:
        raise AppendOutcomeUnknownError("the link to worker 1 closed ([Errno 104] Connection reset by peer)")

    monkeypatch.setattr(env.log, "append", lost)
    response = await env.client.post("/Greeter/greet/send", json="x")
    assert response.status_code == 503
    message = response.json()["message"]
    assert "may or may not have been recorded" in message and "idempotency-key" in message
    assert "Errno" not in message and "worker 1" not in message, message


@pytest.mark.parametrize(
    ("error", "recorded"),
    [
        (AppendOutcomeUnknownError("an append to t[0] was not acknowledged within append_timeout_ms=30000"), "may or may not"),
        (AppendOutcomeUnknownError("the brokers acknowledged an append as a duplicate of a batch they hold"), "may or may not"),
        (LogError("embedded log failed to write or sync: OSError(5); appends in flight may or may not be durable"), "may or may not"),
        (LogClosedError("embedded log was closed before this append was written"), "not"),
        (AppendNotSentError("worker 1 of this node does not accept connections; nothing was sent"), "not"),
    ],
)
async def test_a_failed_append_is_503_saying_honestly_whether_it_was_recorded(
    env: Env, monkeypatch: pytest.MonkeyPatch, error: LogError, recorded: str
) -> None:
    async def fail(partition: int, entries: object) -> int:
        raise error

    monkeypatch.setattr(env.log, "append", fail)
    response = await env.client.post("/Counter/a/add", json=1)
    assert response.status_code == 503  # as Restate answers an ingress request its log did not take
    message = response.json()["message"]
    if recorded == "not":
        assert "was not recorded, retrying it is safe" in message, message
    else:
        assert "may or may not have been recorded" in message and "idempotency-key" in message, message
        assert "not recorded" not in message, message


async def test_plain_send_is_202_once_the_invoke_is_durable(env: Env) -> None:
    response = await env.client.post("/Greeter/slow/send")
    assert response.status_code == 202
    payload = response.json()
    assert payload["status"] == "Accepted"
    assert payload["invocationId"] == response.headers["x-restate-id"]
    await env.fake.settled()
    [invoke] = env.fake.bodies(Invoke)
    assert invoke.invocation_id == payload["invocationId"]
    assert invoke.submit_sink is None and invoke.response_sink is None, "a fresh id needs no confirmation from the partition"
    assert invoke.execute_at_ms is None


@pytest.mark.parametrize(
    ("delay", "expected_ms"),
    [("500ms", 500), ("10s", 10_000), ("1m", 60_000), ("PT10S", 10_000), ("1500", 1_500), ("1h 30m", 5_400_000)],
)
async def test_send_delay_sets_execute_at(env: Env, delay: str, expected_ms: int) -> None:
    before = time.time_ns() // 1_000_000
    response = await env.client.post(f"/Greeter/slow/send?delay={delay}")
    after = time.time_ns() // 1_000_000
    assert response.status_code == 202, response.text
    assert "executionTime" in response.json()
    await env.fake.settled()
    [invoke] = env.fake.bodies(Invoke)
    assert invoke.execute_at_ms is not None
    assert before + expected_ms <= invoke.execute_at_ms <= after + expected_ms


async def test_delay_is_rejected_on_calls_and_when_malformed(env: Env) -> None:
    on_call = await env.client.post("/Greeter/slow?delay=10s")
    assert on_call.status_code == 400 and "only with sends" in on_call.json()["message"]
    malformed = await env.client.post("/Greeter/slow/send?delay=soon")
    assert malformed.status_code == 400 and "delay" in malformed.json()["message"]
    negative = await env.client.post("/Greeter/slow/send?delay=-5s")
    assert negative.status_code == 400
    assert env.fake.bodies(Invoke) == []


async def test_idempotent_send_twice_is_previously_accepted_with_the_same_id(env: Env) -> None:
    headers = {"idempotency-key": "order-1"}
    first = await env.client.post("/Greeter/slow/send", headers=headers)
    second = await env.client.post("/Greeter/slow/send", headers=headers)
    assert first.json()["status"] == "Accepted"
    assert second.json()["status"] == "PreviouslyAccepted"
    assert first.json()["invocationId"] == second.json()["invocationId"]
    assert first.json()["invocationId"] == idempotent_invocation_id("Greeter", None, "slow", "order-1")
    [invoke, _] = env.fake.bodies(Invoke)
    assert invoke.completion_retention_ms == IngressSettings().default_idempotency_retention_ms


async def test_retention_follows_the_service_declaration_and_restates_rule(env: Env) -> None:
    """Counter declares journalRetention 60 s: a plain call keeps outcome and journal 60 s; with an idempotency key the
    outcome stays for the idempotency retention and the journal still 60 s."""
    await env.client.post("/Counter/r/add", content=b"1", headers={"content-type": "application/json"})
    await env.client.post("/Counter/r/add", content=b"1", headers={"content-type": "application/json", "idempotency-key": "k"})
    await env.fake.settled()
    plain, keyed = env.fake.bodies(Invoke)
    assert (plain.completion_retention_ms, plain.journal_retention_ms) == (60_000, 60_000)
    idempotency_ms = IngressSettings().default_idempotency_retention_ms
    assert (keyed.completion_retention_ms, keyed.journal_retention_ms) == (idempotency_ms, 60_000)


async def test_idempotent_call_duplicate_attaches_and_gets_expiry(env: Env) -> None:
    headers = {"idempotency-key": "k", "content-type": "application/json"}
    first = await env.client.post("/Counter/x/add", content=b"5", headers=headers)
    second = await env.client.post("/Counter/x/add", content=b"5", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == b"5"
    assert first.headers["x-restate-id"] == second.headers["x-restate-id"]
    assert first.headers["idempotency-expires"].endswith("Z")


async def test_workflow_run_gets_a_deterministic_id_and_a_second_call_conflicts(env: Env) -> None:
    sent = await env.client.post("/Signup/alice/run/send")
    assert sent.status_code == 202
    expected_id = workflow_invocation_id("Signup", "alice")
    assert sent.json()["invocationId"] == expected_id
    again = await env.client.post("/Signup/alice/run/send")
    assert again.json()["status"] == "PreviouslyAccepted"
    call = await env.client.post("/Signup/alice/run")
    assert call.status_code == 409
    assert "already invoked" in call.json()["message"]
    [invoke, *_] = env.fake.bodies(Invoke)
    assert invoke.target.service_type is ServiceType.WORKFLOW and invoke.target.handler_kind is HandlerKind.WORKFLOW
    assert invoke.completion_retention_ms == 5000  # the handler's workflowCompletionRetention
    assert invoke.journal_retention_ms == 5000, "the journal is kept at most as long as the outcome"


async def test_idempotency_key_on_workflow_run_is_400(env: Env) -> None:
    response = await env.client.post("/Signup/bob/run", headers={"idempotency-key": "x"})
    assert response.status_code == 400
    assert "idempotency key" in response.json()["message"]
    shared = await env.client.post("/Signup/bob/status/send", headers={"idempotency-key": "x"})
    assert shared.status_code == 202


async def test_workflow_output_is_470_while_running_then_the_value(env: Env) -> None:
    await env.client.post("/Signup/carol/run/send")
    running = await env.client.get("/restate/workflow/Signup/carol/output")
    assert running.status_code == 470
    env.fake.complete(workflow_invocation_id("Signup", "carol"), Outcome(value=b'"done"'))
    done = await env.client.get("/restate/workflow/Signup/carol/output")
    assert done.status_code == 200 and done.content == b'"done"'
    assert done.headers["content-type"] == "application/json"
    assert done.headers["x-restate-id"] == workflow_invocation_id("Signup", "carol")
    assert "idempotency-expires" in done.headers


async def test_workflow_attach_blocks_until_the_outcome(env: Env) -> None:
    await env.client.post("/Signup/dave/run/send")
    attach = asyncio.create_task(env.client.get("/restate/workflow/Signup/dave/attach"))
    await _until(lambda: env.bus.waiting_count == 1)
    assert not attach.done()
    env.fake.complete(workflow_invocation_id("Signup", "dave"), Outcome(failure=Failure(500, "it broke")))
    response = await asyncio.wait_for(attach, 5)
    assert response.status_code == 500 and response.json()["message"] == "it broke"


async def test_attach_and_output_by_invocation_id(env: Env) -> None:
    sent = await env.client.post("/Greeter/slow/send")
    invocation_id = sent.json()["invocationId"]
    assert (await env.client.get(f"/restate/invocation/{invocation_id}/output")).status_code == 470
    env.fake.complete(invocation_id, Outcome(value=b"ok"))
    attached = await env.client.get(f"/restate/invocation/{invocation_id}/attach")
    assert attached.status_code == 200 and attached.content == b"ok"
    also = await env.client.get(f"/restate/attach/{invocation_id}")
    assert also.status_code == 200 and also.content == b"ok"
    unknown = str(InvocationId.random(7))
    assert (await env.client.get(f"/restate/invocation/{unknown}/attach")).status_code == 404
    bad = await env.client.get("/restate/invocation/not-an-id/attach")
    assert bad.status_code == 400 and "not-an-id" in bad.json()["message"]
    assert (await env.client.post(f"/restate/invocation/{invocation_id}/attach")).status_code == 405


async def test_attach_by_idempotency_key_path_and_by_json_target(env: Env) -> None:
    headers = {"idempotency-key": "abc", "content-type": "application/json"}
    await env.client.post("/Counter/k1/add", content=b"3", headers=headers)
    keyed = await env.client.get("/restate/invocation/Counter/k1/add/abc/output")
    assert keyed.status_code == 200 and keyed.content == b"3"
    await env.client.post("/Greeter/greet", content=b'"z"', headers=headers)
    unkeyed = await env.client.get("/restate/invocation/Greeter/greet/abc/attach")
    assert unkeyed.status_code == 200 and unkeyed.content == b'"hello z"'
    target = {"target": "idempotentInvocation", "service": "Counter", "key": "k1", "handler": "add", "idempotencyKey": "abc"}
    by_target = await env.client.post("/restate/output", content=json.dumps(target).encode())
    assert by_target.status_code == 200 and by_target.content == b"3"
    unknown_service = await env.client.get("/restate/invocation/Nope/x/abc/attach")
    assert unknown_service.status_code == 404


async def test_awakeable_resolve_and_reject_go_to_the_owner_partition(env: Env) -> None:
    owners = [InvocationId.random(partition_key_for_key(k)) for k in ("a", "b", "c", "d", "e", "f")]
    for index, owner in enumerate(owners):
        awakeable_id = format_awakeable_id(owner, 17 + index)
        verb = "resolve" if index % 2 == 0 else "reject"
        prefix = "/restate/awakeables" if index < 3 else "/restate/a"
        response = await env.client.post(f"{prefix}/{awakeable_id}/{verb}", content=b"payload")
        assert response.status_code == 202
    await _until(lambda: len(env.fake.bodies(Signal)) == len(owners))
    by_owner = {record.body.invocation_id: (partition, record.body) for partition, record in env.fake.records}
    assert len({partition for partition, _ in by_owner.values()}) > 1
    for index, owner in enumerate(owners):
        partition, signal = by_owner[str(owner)]
        assert isinstance(signal, Signal)
        assert signal.signal_index == 17 + index
        assert partition == partition_of(owner.partition_key, PARTITIONS)
        if index % 2 == 0:
            assert signal.outcome == Outcome(value=b"payload")
        else:
            assert signal.outcome == Outcome(failure=Failure(500, "payload"))


async def test_bad_awakeable_ids_and_paths(env: Env) -> None:
    bad = await env.client.post("/restate/awakeables/sign_1garbage/resolve")
    assert bad.status_code == 400 and "sign_1garbage" in bad.json()["message"]
    owner = InvocationId.random(1)
    awakeable_id = format_awakeable_id(owner, 17)
    assert (await env.client.post(f"/restate/awakeables/{awakeable_id}/settle")).status_code == 404
    assert (await env.client.get(f"/restate/awakeables/{awakeable_id}/resolve")).status_code == 405
    assert env.fake.bodies(Signal) == []


async def test_health_lists_services(env: Env) -> None:
    response = await env.client.get("/restate/health")
    assert response.status_code == 200
    assert sorted(response.json()["services"]) == ["Counter", "Greeter", "Signup"]


async def test_health_is_503_naming_the_partitions_without_a_working_leader() -> None:
    app = build_ingress_app(MemoryLog(PARTITIONS), await make_registry(), ReplyBus(node_id=1), IngressSettings())
    unready: list[int] = [2, 3]
    app.ingress.partitions_without_leader = lambda: list(unready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as client:
        response = await client.get("/restate/health")
        assert response.status_code == 503
        assert response.json()["partitions_without_leader"] == [2, 3] and "[2, 3]" in response.json()["message"]
        unready.clear()
        assert (await client.get("/restate/health")).status_code == 200


async def test_call_without_reply_times_out_with_504_and_releases_the_sink() -> None:
    async with _env(IngressSettings(call_timeout_ms=200)) as env:
        response = await env.client.post("/Greeter/slow")
        assert response.status_code == 504
        assert response.headers["x-restate-id"] in response.json()["message"]
        assert env.bus.waiting_count == 0


async def test_too_many_waiting_requests_is_429() -> None:
    async with _env(IngressSettings(call_timeout_ms=2_000)) as env:
        env.bus.max_waiting_requests = 1
        first = asyncio.create_task(env.client.post("/Greeter/slow"))
        await _until(lambda: env.bus.waiting_count == 1)
        second = await env.client.post("/Greeter/slow")
        assert second.status_code == 429
        await env.fake.settled()
        [invoke] = env.fake.bodies(Invoke)
        env.fake.complete(invoke.invocation_id, Outcome(value=b"x"))
        assert (await asyncio.wait_for(first, 5)).status_code == 200


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_served_by_uvicorn_over_real_sockets() -> None:
    from ingress.serving import bound_port, start_app, stop_app

    log = MemoryLog(PARTITIONS)
    bus = ReplyBus(node_id=2)
    registry = await make_registry()
    app = build_ingress_app(log, registry, bus, IngressSettings())
    async with FakePartitions(log, bus, default_responder) as fake:
        server, task = await start_app(app, "127.0.0.1", 0)
        try:
            base = f"http://127.0.0.1:{bound_port(server)}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                response = await client.post("/Counter/a%2Fb%20c/add", content=b"7", headers={"content-type": "application/json"})
                assert response.status_code == 200 and response.content == b"7"
                sent = await client.post("/Signup/x%2Fy/run/send?delay=1s")
                assert sent.status_code == 202
        finally:
            await stop_app(server, task)
    [add, run] = fake.bodies(Invoke)
    assert add.target.key == "a/b c"
    assert ("x-restate-ingress-path", "/Counter/a%2Fb%20c/add") in add.headers
    assert run.invocation_id == workflow_invocation_id("Signup", "x/y") and run.execute_at_ms is not None


async def test_an_unexpected_error_is_a_500_without_its_text_and_logged_with_its_traceback(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(service_name: str) -> None:
        raise RuntimeError("internal detail: connection string postgres://secret")

    monkeypatch.setattr(env.registry, "service", broken)
    with caplog.at_level("ERROR", logger="ingress.http"):
        response = await env.client.post("/Greeter/greet", json="Ada")
    assert response.status_code == 500
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert response.json()["message"] == "the ingress failed unexpectedly on POST /Greeter/greet; the node's log has the traceback"
    [record] = [record for record in caplog.records if record.exc_info is not None]
    assert "postgres://secret" in str(record.exc_info[1]), "the log keeps what the client is not told"


@pytest.mark.parametrize("token", [None, "ingress-secret"])
async def test_the_authorization_header_is_forwarded_unless_it_was_the_ingress_token(token: str | None) -> None:
    settings = IngressSettings(submit_timeout_ms=2_000, ingress_token=token)
    async with _env(settings) as env:
        if token is not None:
            refused = await env.client.post("/Greeter/echo/send", content=b"abc", headers={"content-type": "text/plain"})
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        headers = {"content-type": "text/plain", "authorization": f"Bearer {token or 'for-the-service'}"}
        assert (await env.client.post("/Greeter/echo/send", content=b"abc", headers=headers)).status_code == 202
        await env.fake.settled()
        forwarded = [dict(invoke.headers).get("authorization") for invoke in env.fake.bodies(Invoke)]
    assert forwarded == (["Bearer for-the-service"] if token is None else [None]), "the node's credential stays with the node"
