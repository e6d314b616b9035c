"""Tests of the admin API app: version, deployments, services, handlers, invocation commands, state, promises and metrics."""

from __future__ import annotations

import asyncio
import copy
import datetime
import errno
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ingress_fakes import (
    TEST_MANIFEST,
    FakePartitions,
    default_responder,
    endpoint_from_manifest,
)

from ingress.admin import build_admin_app
from ingress.discovery import DiscoveryError
from ingress.durations import parse_duration_ms
from ingress.http import build_ingress_app
from ingress.registry import Registry
from ingress.schema import DiscoveredEndpoint
from ingress.settings import IngressSettings, ServiceDefaults
from partition_worker.settings import InvokerSettings
from protocol.ids import InvocationId
from wal.memory import MemoryLog
from wal.records import DEFAULT_RETRY_POLICY, Cancel, CompletePromise, Failure, Kill, Outcome, PatchState, Purge, Resume
from wal.replies import ReplyBus

CHANGED = copy.deepcopy(TEST_MANIFEST)
CHANGED["services"][0]["handlers"] = CHANGED["services"][0]["handlers"][1:]  # drops Greeter/greet


class FakeDiscoverer:
    """Answers discovery from a table of URIs; unknown URIs fail like an unreachable endpoint."""

    def __init__(self) -> None:
        self.manifests: dict[str, dict[str, Any]] = {"http://svc:9080": TEST_MANIFEST}
        self.calls: list[tuple[str, dict[str, str], bool]] = []

    async def __call__(self, uri: str, headers: dict[str, str], use_http_11: bool) -> DiscoveredEndpoint:
        self.calls.append((uri, headers, use_http_11))
        manifest = self.manifests.get(uri.rstrip("/"))
        if manifest is None:
            raise DiscoveryError(uri, "cannot connect: connection refused")
        return endpoint_from_manifest(manifest, uri=uri)


@dataclass
class Env:
    admin: httpx.AsyncClient
    ingress: httpx.AsyncClient
    registry: Registry
    fake: FakePartitions
    discoverer: FakeDiscoverer


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    log = MemoryLog(2)
    bus = ReplyBus(node_id=3)
    registry = Registry()
    discoverer = FakeDiscoverer()
    settings = IngressSettings(admin_command_timeout_ms=2_000, submit_timeout_ms=2_000)
    invoker = InvokerSettings()
    defaults = ServiceDefaults(DEFAULT_RETRY_POLICY, invoker.inactivity_timeout_ms, invoker.abort_timeout_ms)
    admin_app = build_admin_app(log, registry, bus, settings, discoverer=discoverer, service_defaults=defaults)
    ingress_app = build_ingress_app(log, registry, bus, settings)
    async with (
        FakePartitions(log, bus, default_responder) as fake,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=admin_app), base_url="http://admin") as admin,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=ingress_app), base_url="http://ingress") as ingress,
    ):
        yield Env(admin, ingress, registry, fake, discoverer)


def check_service_shape(service: dict[str, Any]) -> None:
    """The fields the `restate` CLI's ServiceMetadata requires, with their types."""
    assert isinstance(service["name"], str)
    assert service["ty"] in ("Service", "VirtualObject", "Workflow")
    assert service["deployment_id"].startswith("dp_1")
    assert isinstance(service["revision"], int) and isinstance(service["public"], bool)
    for key in ("idempotency_retention", "inactivity_timeout", "abort_timeout"):
        parse_duration_ms(service[key])
    assert set(service["retry_policy"]) >= {"initial_interval", "exponentiation_factor", "on_max_attempts"}
    for handler in service["handlers"]:
        check_handler_shape(handler)


def check_handler_shape(handler: dict[str, Any]) -> None:
    assert isinstance(handler["name"], str)
    assert isinstance(handler["input_description"], str) and isinstance(handler["output_description"], str)
    assert handler.get("ty", "Exclusive") in ("Exclusive", "Shared", "Workflow")
    assert isinstance(handler["public"], bool) and isinstance(handler["retry_policy"], dict)


def check_deployment_shape(deployment: dict[str, Any], detailed: bool) -> None:
    assert deployment["id"].startswith("dp_1")
    assert deployment["protocol_type"] in ("BidiStream", "RequestResponse")
    assert deployment["http_version"] in ("HTTP/2.0", "HTTP/1.1")
    assert datetime.datetime.fromisoformat(deployment["created_at"]).tzinfo is not None
    assert isinstance(deployment["min_protocol_version"], int) and isinstance(deployment["max_protocol_version"], int)
    for service in deployment["services"]:
        if detailed:
            check_service_shape(service)
        else:
            assert set(service) == {"name", "revision"}


async def register(env: Env, prefix: str = "", **fields: Any) -> httpx.Response:
    return await env.admin.post(f"{prefix}/deployments", json={"uri": "http://svc:9080", **fields})


async def test_version_offers_admin_api_2_to_4(env: Env) -> None:
    response = await env.admin.get("/version")
    assert response.status_code == 200
    payload = response.json()
    assert payload["min_admin_api_version"] == 2 and payload["max_admin_api_version"] == 4
    assert isinstance(payload["version"], str) and payload["ingress_endpoint"].startswith("http://")
    assert payload["features"] == {}


@pytest.mark.parametrize("prefix", ["", "/v2", "/v3", "/v4"])
async def test_health_under_every_prefix(env: Env, prefix: str) -> None:
    assert (await env.admin.get(f"{prefix}/health")).status_code == 200


async def test_v1_is_refused(env: Env) -> None:
    response = await env.admin.get("/v1/health")
    assert response.status_code == 400 and "V1" in response.text


async def test_register_creates_then_reports_existing(env: Env) -> None:
    created = await register(env, "/v4", additional_headers={"x-api-key": "s"}, metadata={"team": "payments"})
    assert created.status_code == 201
    body = created.json()
    assert created.headers["location"] == f"deployments/{body['id']}"
    assert body["min_protocol_version"] == 5 and body["max_protocol_version"] == 7 and body["sdk_version"] == "test/1.0"
    assert sorted(s["name"] for s in body["services"]) == ["Counter", "Greeter", "Signup"]
    for service in body["services"]:
        check_service_shape(service)
    assert env.discoverer.calls == [("http://svc:9080", {"x-api-key": "s"}, False)]
    again = await register(env, "/v4", additional_headers={"x-api-key": "s"}, metadata={"team": "payments"})
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert len(env.registry.deployments()) == 1


async def test_register_dry_run_registers_nothing(env: Env) -> None:
    response = await register(env, dry_run=True)
    assert response.status_code == 201
    assert env.registry.deployments() == []
    assert (await env.admin.get("/services")).json() == {"services": []}


async def test_incompatible_reregistration_is_409_until_forced(env: Env) -> None:
    first = (await register(env)).json()
    env.discoverer.manifests["http://svc:9080"] = CHANGED
    conflict = await register(env)
    assert conflict.status_code == 409
    assert "greet" in conflict.json()["message"] and "force" in conflict.json()["message"]
    assert env.registry.handler_target("Greeter", "greet") is not None
    forced = await register(env, force=True)
    assert forced.status_code == 200 and forced.json()["id"] == first["id"]
    assert env.registry.handler_target("Greeter", "greet") is None


async def test_v2_defaults_to_force_and_answers_unchanged_with_409(env: Env) -> None:
    assert (await register(env, "/v2")).status_code == 201
    env.discoverer.manifests["http://svc:9080"] = CHANGED
    overwritten = await register(env, "/v2")
    assert overwritten.status_code == 201  # force defaults to true on v2, overwrite answers 201
    unchanged = await register(env, "/v2", force=False)
    assert unchanged.status_code == 409


async def test_register_bad_bodies_are_400(env: Env) -> None:
    missing = await env.admin.post("/deployments", json={"use_http_11": True})
    assert missing.status_code == 400 and "uri" in missing.json()["message"]
    not_json = await env.admin.post("/deployments", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    lambda_body = await env.admin.post("/deployments", json={"arn": "arn:aws:lambda:x"})
    assert lambda_body.status_code == 400 and "Lambda" in lambda_body.json()["message"]
    auth = await register(env, auth={"GoogleIdToken": {}})
    assert auth.status_code == 400 and "auth" in auth.json()["message"]
    assert env.registry.deployments() == []
    assert env.discoverer.calls == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
async def test_a_body_that_is_not_declared_json_is_415_and_changes_nothing(env: Env, content_type: str | None) -> None:
    """What a cross-site form or text/plain POST from a web page would send: refused before anything is read or done."""
    headers = {} if content_type is None else {"content-type": content_type}
    body = b'{"uri": "http://127.0.0.1:9080"}'
    refused = await env.admin.post("/deployments", content=body, headers=headers)
    assert refused.status_code == 415, refused.text
    assert "content-type application/json" in refused.json()["message"]
    query = await env.admin.post("/query", content=b'{"query": "SELECT 1"}', headers={**headers, "accept": "application/json"})
    assert query.status_code == 415
    assert env.registry.deployments() == []
    assert env.discoverer.calls == []


async def test_unusable_uri_is_400_before_discovery() -> None:
    app = build_admin_app(MemoryLog(1), Registry(), ReplyBus(1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as admin:
        response = await admin.post("/deployments", json={"uri": "localhost:9080"})
    assert response.status_code == 400
    assert "'uri'" in response.json()["message"] and "absolute" in response.json()["message"]


async def test_failed_discovery_names_the_uri_and_registers_nothing(env: Env) -> None:
    response = await env.admin.post("/deployments", json={"uri": "http://down:1"})
    assert response.status_code == 502, "the deployment named in the request failed: Bad Gateway, not a server error"
    payload = response.json()
    assert "http://down:1" in payload["message"] and "connection refused" in payload["message"]
    assert payload["restate_code"] == "META0003"
    assert env.registry.deployments() == []


async def test_deployment_routes(env: Env) -> None:
    deployment_id = (await register(env)).json()["id"]
    listed = (await env.admin.get("/v3/deployments")).json()["deployments"]
    assert [d["id"] for d in listed] == [deployment_id]
    check_deployment_shape(listed[0], detailed=False)
    detailed = await env.admin.get(f"/deployments/{deployment_id}")
    assert detailed.status_code == 200
    check_deployment_shape(detailed.json(), detailed=True)
    assert detailed.json()["uri"] == "http://svc:9080"
    missing = await env.admin.get("/deployments/dp_1nope")
    assert missing.status_code == 404 and "dp_1nope" in missing.json()["message"]
    refused = await env.admin.delete(f"/deployments/{deployment_id}")
    assert refused.status_code == 409
    removed = await env.admin.delete(f"/deployments/{deployment_id}?force=true")
    assert removed.status_code == 202
    assert (await env.admin.get("/deployments")).json() == {"deployments": []}


async def test_service_and_handler_routes(env: Env) -> None:
    deployment_id = (await register(env)).json()["id"]
    services = (await env.admin.get("/v4/services")).json()["services"]
    assert [s["name"] for s in services] == ["Counter", "Greeter", "Signup"]
    signup = (await env.admin.get("/services/Signup")).json()
    check_service_shape(signup)
    assert signup["ty"] == "Workflow" and signup["deployment_id"] == deployment_id and signup["revision"] == 1
    assert parse_duration_ms(signup["workflow_completion_retention"]) == 5000
    counter = (await env.admin.get("/services/Counter")).json()
    greeter = (await env.admin.get("/services/Greeter")).json()
    assert parse_duration_ms(counter["journal_retention"]) == 60_000, "declared by the service"
    assert parse_duration_ms(greeter["journal_retention"]) == 24 * 3_600_000, "the node's default, Restate's 24 hours"
    handlers = (await env.admin.get("/services/Counter/handlers")).json()["handlers"]
    assert {h["name"]: h["ty"] for h in handlers} == {"add": "Exclusive", "get": "Shared"}
    add = (await env.admin.get("/services/Counter/handlers/add")).json()
    assert add["input_description"] == "JSON integer" and add["input_json_schema"] == {"type": "integer"}
    greeter = (await env.admin.get("/services/Greeter")).json()
    # What a service that declares nothing shows is what the node applies: the invoker's timeouts, the node's retry policy.
    assert parse_duration_ms(greeter["inactivity_timeout"]) == InvokerSettings().inactivity_timeout_ms
    assert parse_duration_ms(greeter["abort_timeout"]) == InvokerSettings().abort_timeout_ms
    assert parse_duration_ms(greeter["retry_policy"]["initial_interval"]) == DEFAULT_RETRY_POLICY.initial_interval_ms
    assert parse_duration_ms(greeter["retry_policy"]["max_interval"]) == DEFAULT_RETRY_POLICY.max_interval_ms
    assert greeter["retry_policy"]["max_attempts"] == DEFAULT_RETRY_POLICY.max_attempts
    hidden = next(h for h in greeter["handlers"] if h["name"] == "hidden")
    assert hidden["public"] is False and "ty" not in hidden
    assert (await env.admin.get("/services/Nope")).status_code == 404
    missing_handler = await env.admin.get("/services/Counter/handlers/nope")
    assert missing_handler.status_code == 404 and "'nope'" in missing_handler.json()["message"]


async def test_invocation_commands(env: Env) -> None:
    await register(env)
    running = (await env.ingress.post("/Greeter/slow/send")).json()["invocationId"]
    assert (await env.admin.patch(f"/v4/invocations/{running}/resume")).status_code == 200
    assert (await env.admin.patch(f"/invocations/{running}/purge")).status_code == 409
    assert (await env.admin.patch(f"/invocations/{running}/cancel")).status_code == 202
    assert (await env.admin.patch(f"/invocations/{running}/kill")).status_code == 409  # already completed by the cancel
    assert (await env.admin.patch(f"/invocations/{running}/purge")).status_code == 200
    unknown = str(InvocationId.random(5))
    not_found = await env.admin.patch(f"/invocations/{unknown}/kill")
    assert not_found.status_code == 404 and unknown in not_found.json()["message"]
    bad = await env.admin.patch("/invocations/inv_bogus/cancel")
    assert bad.status_code == 400 and "invocation_id" in bad.json()["message"]
    assert (await env.admin.patch(f"/invocations/{running}/explode")).status_code == 404
    commands = [type(body) for _, record in env.fake.records for body in [record.body] if type(body) in (Cancel, Kill, Purge, Resume)]
    assert commands == [Resume, Purge, Cancel, Kill, Purge, Kill]


async def test_state_patch_is_a_record_on_the_keys_partition_answered_once_applied(env: Env) -> None:
    await register(env)
    body = {"object_key": "alice", "new_state": {"count": list(b"7")}, "version": "v1"}
    assert (await env.admin.post("/services/Counter/state", json=body)).status_code == 200
    [patch] = env.fake.bodies(PatchState)
    assert (patch.service, patch.key, patch.state, patch.version) == ("Counter", "alice", ((b"count", b"7"),), "v1")
    assert patch.reply_to is not None
    too_big = await env.admin.post("/services/Counter/state", json={"object_key": "alice", "new_state": {"count": [256]}})
    assert too_big.status_code == 400 and "new_state.count.0" in too_big.json()["message"]
    assert (await env.admin.post("/services/Greeter/state", json=body)).status_code == 400


async def test_a_workflow_promise_is_completed_once(env: Env) -> None:
    await register(env)
    resolve = {"object_key": "u1", "promise": "clicked", "value": list(b'"s3cret"')}
    assert (await env.admin.post("/services/Signup/promises", json=resolve)).status_code == 200
    [completion] = env.fake.bodies(CompletePromise)
    assert (completion.service, completion.key, completion.promise, completion.outcome) == (
        "Signup",
        "u1",
        "clicked",
        Outcome(value=b'"s3cret"'),
    )
    again = await env.admin.post(
        "/services/Signup/promises", json={"object_key": "u1", "promise": "clicked", "failure": {"code": 400, "message": "no"}}
    )
    assert again.status_code == 409 and "already completed" in again.json()["message"]
    assert env.fake.bodies(CompletePromise)[1].outcome == Outcome(failure=Failure(400, "no"))


@pytest.mark.parametrize(
    ("service", "body", "status", "says"),
    [
        ("Signup", {"object_key": "u1", "promise": "clicked"}, 400, "exactly one of 'value'"),
        ("Signup", {"object_key": "u1", "promise": "clicked", "value": [1], "failure": {"code": 500, "message": "x"}}, 400, "exactly one"),
        ("Signup", {"object_key": "u1", "promise": "", "value": [1]}, 400, "'promise'"),
        ("Signup", {"object_key": "u1", "promise": "p", "value": [300]}, 400, "'value.0'"),
        ("Signup", {"promise": "p", "value": [1]}, 400, "'object_key'"),
        ("Counter", {"object_key": "u1", "promise": "p", "value": [1]}, 400, "only workflows have promises"),
        ("Nope", {"object_key": "u1", "promise": "p", "value": [1]}, 404, "'Nope'"),
    ],
)
async def test_a_bad_promise_completion_says_what_is_wrong(env: Env, service: str, body: dict[str, Any], status: int, says: str) -> None:
    await register(env)
    response = await env.admin.post(f"/services/{service}/promises", json=body)
    assert response.status_code == status and says in response.json()["message"], response.text
    assert not env.fake.bodies(CompletePromise)


async def test_deprecated_delete_invocation_appends_without_waiting(env: Env) -> None:
    await register(env)
    running = (await env.ingress.post("/Greeter/slow/send")).json()["invocationId"]
    response = await env.admin.delete(f"/invocations/{running}?mode=kill")
    assert response.status_code == 202
    assert (await env.admin.delete(f"/invocations/{running}?mode=explode")).status_code == 400
    await _applied(env, Kill)
    [kill] = env.fake.bodies(Kill)
    assert kill.invocation_id == running and kill.reply_to is None


async def test_metrics_expose_request_counts(env: Env) -> None:
    await register(env)
    await env.ingress.post("/Greeter/greet")
    text = (await env.admin.get("/metrics")).text
    assert 'duro_ingress_requests_total{kind="call",status="200"}' in text
    assert "duro_ingress_request_duration_seconds_bucket" in text
    assert 'duro_admin_requests_total{kind="register_deployment",status="201"}' in text


async def _applied(env: Env, kind: type, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not env.fake.bodies(kind):
            env.fake.applied.clear()
            await env.fake.applied.wait()


async def test_unknown_routes_answer_with_the_error_body(env: Env) -> None:
    missing = await env.admin.post("/nothing-here", json={})
    assert missing.status_code == 404 and "/nothing-here" in missing.json()["message"]
    wrong_method = await env.admin.put("/deployments")
    assert wrong_method.status_code == 405 and "PUT" in wrong_method.json()["message"]


async def test_an_unexpected_error_is_a_500_without_its_text_and_logged_with_its_traceback(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("internal detail: token abc123")

    monkeypatch.setattr(env.registry, "services", broken)
    with caplog.at_level("ERROR", logger="duro.admin"):
        response = await env.admin.get("/services")
    assert response.status_code == 500
    assert "abc123" not in response.text and "RuntimeError" not in response.text
    assert response.json() == {
        "message": "the admin API failed unexpectedly on GET /services; the node's log has the traceback",
        "restate_code": None,
    }
    assert any(record.exc_info is not None and "abc123" in str(record.exc_info[1]) for record in caplog.records)


class FullDiskStore:
    """A registry store on a disk with no room left."""

    async def load(self) -> bytes | None:
        return None

    async def save(self, document: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_a_registration_on_a_full_disk_is_507_and_registers_nothing() -> None:
    registry = Registry(FullDiskStore())
    app = build_admin_app(MemoryLog(1), registry, ReplyBus(node_id=1), IngressSettings(), discoverer=FakeDiscoverer())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as admin:
        response = await admin.post("/deployments", json={"uri": "http://svc:9080"})
    assert response.status_code == 507
    assert response.json() == {"message": "the node's disk is full: nothing was changed; retry once space is freed", "restate_code": None}
    assert registry.deployments() == []
