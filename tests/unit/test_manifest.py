"""Tests discovery manifest parsing: real SDK manifests parse, bad ones name their fault."""

from __future__ import annotations

import json

import pytest
import restate

from protocol.errors import ManifestError
from protocol.manifest import (
    EndpointManifest,
    HandlerType,
    ProtocolMode,
    RetryPolicyOnMaxAttempts,
    ServiceType,
    parse_manifest,
)

V4 = "application/vnd.restate.endpointmanifest.v4+json"

# Python SDK 1.2.0's discovery output (see shared/notes/restate-protocol.md).
PYTHON_SDK_120 = (
    b'{"protocolMode":"BIDI_STREAM","minProtocolVersion":5,"maxProtocolVersion":7,"services":'
    b'[{"name":"Counter","ty":"VIRTUAL_OBJECT","handlers":[{"name":"add","ty":"EXCLUSIVE","input":'
    b'{"required":false,"contentType":"application/json","jsonSchema":{"type":"integer"}},"output":'
    b'{"contentType":"application/json","setContentTypeIfEmpty":false,"jsonSchema":{"type":"integer"}}}]}]}'
)


def test_python_sdk_120_manifest_parses() -> None:
    manifest = parse_manifest(PYTHON_SDK_120, V4)
    assert manifest.protocol_mode is ProtocolMode.BIDI_STREAM
    assert (manifest.min_protocol_version, manifest.max_protocol_version) == (5, 7)
    service = manifest.services[0]
    assert (service.name, service.ty) == ("Counter", ServiceType.VIRTUAL_OBJECT)
    handler = service.handlers[0]
    assert (handler.name, handler.ty) == ("add", HandlerType.EXCLUSIVE)
    assert handler.input is not None and handler.input.content_type == "application/json"
    assert handler.input.json_schema == {"type": "integer"}
    assert handler.output is not None and handler.output.set_content_type_if_empty is False
    assert json.loads(manifest.to_json_bytes()) == json.loads(PYTHON_SDK_120)


async def test_installed_python_sdk_manifest_parses() -> None:
    """Asks the installed restate-sdk's ASGI app for its manifest, as discovery would."""
    greeter = restate.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: restate.Context, name: str) -> str:
        return name

    counter = restate.VirtualObject("Counter")

    @counter.handler(kind="shared")
    async def get(ctx: restate.ObjectSharedContext) -> int:
        return 0

    status, content_type, body = await _asgi_get(restate.app([greeter, counter]), "/discover", V4)
    assert status == 200
    manifest = parse_manifest(body, content_type)
    by_name = {service.name: service for service in manifest.services}
    assert by_name["Greeter"].ty is ServiceType.SERVICE
    assert by_name["Greeter"].handlers[0].ty is None
    shared = by_name["Counter"].handlers[0]
    assert shared.ty is HandlerType.SHARED
    assert shared.input is not None and shared.input.content_type is None  # takes no body


async def _asgi_get(app, path: str, accept: str) -> tuple[int, str, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "2",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"accept", accept.encode())],
        "server": ("127.0.0.1", 9080),
        "client": ("127.0.0.1", 1),
    }
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = messages[0]
    headers = dict(start["headers"])
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], headers[b"content-type"].decode(), body


def test_unknown_fields_are_kept_and_options_typed() -> None:
    document = json.loads(PYTHON_SDK_120)
    document["futureField"] = {"x": 1}
    service = document["services"][0]
    service.update(
        documentation="counts",
        metadata={"team": "a"},
        inactivityTimeout=1000,
        enableLazyState=True,
        ingressPrivate=False,
        retryPolicyMaxAttempts=3,
        retryPolicyExponentiationFactor=1.5,
        retryPolicyOnMaxAttempts="KILL",
        idempotencyRetention=60000,
        newServiceThing=True,
    )
    service["handlers"][0]["workflowCompletionRetention"] = 5
    manifest = parse_manifest(json.dumps(document).encode(), V4)
    parsed = manifest.services[0]
    assert parsed.retry_policy_on_max_attempts is RetryPolicyOnMaxAttempts.KILL
    assert parsed.retry_policy_exponentiation_factor == 1.5
    assert parsed.enable_lazy_state is True and parsed.metadata == {"team": "a"}
    assert parsed.handlers[0].workflow_completion_retention == 5
    round_trip = json.loads(manifest.to_json_bytes())
    assert round_trip["futureField"] == {"x": 1}
    assert round_trip["services"][0]["newServiceThing"] is True
    assert round_trip["services"][0]["inactivityTimeout"] == 1000


def test_handler_defaults_follow_the_schema() -> None:
    document = json.loads(PYTHON_SDK_120)
    del document["services"][0]["handlers"][0]["input"]
    del document["services"][0]["handlers"][0]["output"]
    handler = parse_manifest(json.dumps(document).encode(), V4).services[0].handlers[0]
    assert handler.input_or_default.content_type == "*/*"
    assert handler.output_or_default.content_type == "application/json"


def _with(**changes) -> bytes:
    document = json.loads(PYTHON_SDK_120)
    for key, value in changes.items():
        if value is None:
            del document[key]
        else:
            document[key] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"<html>", V4, "body is not JSON"),
        (b"[1]", V4, "expected an object"),
        (_with(protocolMode=None), V4, "missing protocolMode"),
        (_with(services=None), V4, "missing services"),
        (_with(protocolMode="CARRIER_PIGEON"), V4, "protocolMode"),
        (PYTHON_SDK_120, "application/json", "content-type is not a manifest type"),
        (PYTHON_SDK_120, "application/vnd.restate.endpointmanifest.v9+json", "content-type is not a manifest type"),
        (_with(minProtocolVersion=1, maxProtocolVersion=4), V4, "do not overlap the supported 5..7"),
        (_with(minProtocolVersion=8, maxProtocolVersion=9), V4, "do not overlap the supported 5..7"),
        (_with(minProtocolVersion=7, maxProtocolVersion=5), V4, "greater than maxProtocolVersion"),
    ],
)
def test_bad_manifests_name_the_fault(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(ManifestError, match=reason) as info:
        parse_manifest(body, content_type)
    assert reason in info.value.reason


def test_missing_nested_field_names_its_path() -> None:
    document = json.loads(PYTHON_SDK_120)
    del document["services"][0]["handlers"][0]["name"]
    with pytest.raises(ManifestError, match=r"missing services\.0\.handlers\.0\.name"):
        parse_manifest(json.dumps(document).encode(), V4)


def test_models_build_from_python_names() -> None:
    manifest = EndpointManifest(
        protocol_mode=ProtocolMode.REQUEST_RESPONSE,
        min_protocol_version=5,
        max_protocol_version=6,
        services=[],
    )
    assert json.loads(manifest.to_json_bytes())["protocolMode"] == "REQUEST_RESPONSE"
