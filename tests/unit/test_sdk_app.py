"""Tests duro's SDK ASGI app served by a real in-process hypercorn: discovery per HTTP version, invocations over HTTP/1.1 and h2c, errors, identity."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message

import sdk
from protocol import Frame, FrameDecoder, decode_message, encode_message, pb
from protocol.h2c import H2cClient
from sdk import Context, ObjectSharedContext, TerminalError
from tests.unit.sdk_endpoint import invocation_body, invoke_headers, messages_of, serve

pytestmark = pytest.mark.timeout(30)

MANIFEST_V4 = "application/vnd.restate.endpointmanifest.v4+json"
MANIFEST_V2 = "application/vnd.restate.endpointmanifest.v2+json"

greeter = sdk.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"


@greeter.handler()
async def nap(ctx: Context, millis: int) -> str:
    await ctx.sleep(timedelta(milliseconds=millis))
    return "rested"


@greeter.handler()
async def refuse(ctx: Context, code: int) -> None:
    raise TerminalError("refused", status_code=code)


@greeter.handler()
async def crash(ctx: Context) -> None:
    raise ValueError("bug")


@greeter.handler()
async def compute(ctx: Context) -> int:
    return await ctx.run_typed("compute", lambda: 21 * 2, sdk.RunOptions(type_hint=int))


counter = sdk.VirtualObject("Counter")


@counter.handler(kind="shared")
async def peek(ctx: ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    async for base_url in serve(sdk.app([greeter, counter])):
        yield base_url


@pytest.fixture
async def h2c() -> AsyncIterator[H2cClient]:
    client = H2cClient()
    yield client
    await client.aclose()


# --- discovery --------------------------------------------------------------------------------


async def test_discovery_over_h2c_advertises_bidi(endpoint: str, h2c: H2cClient) -> None:
    status, headers, body = await h2c.request(endpoint, "GET", "/discover", [("accept", MANIFEST_V4)])

    manifest = json.loads(body)
    assert status == 200
    assert dict(headers)["content-type"] == MANIFEST_V4
    assert manifest["protocolMode"] == "BIDI_STREAM"
    assert (manifest["minProtocolVersion"], manifest["maxProtocolVersion"]) == (5, 7)
    services = {service["name"]: service for service in manifest["services"]}
    assert services["Greeter"]["ty"] == "SERVICE"
    assert services["Counter"]["ty"] == "VIRTUAL_OBJECT"
    [peek_handler] = services["Counter"]["handlers"]
    assert peek_handler["ty"] == "SHARED"
    assert peek_handler["input"] == {}
    assert peek_handler["output"]["jsonSchema"] == {"type": "integer"}


async def test_discovery_over_http11_advertises_request_response(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{endpoint}/discover", headers={"accept": f"{MANIFEST_V2}, {MANIFEST_V4}"})

    assert response.http_version == "HTTP/1.1"
    assert response.status_code == 200
    assert response.headers["content-type"] == MANIFEST_V4
    assert response.json()["protocolMode"] == "REQUEST_RESPONSE"


async def test_forced_protocol_wins_over_the_http_version(h2c: H2cClient) -> None:
    async for base_url in serve(sdk.app([greeter], protocol="request_response")):
        _, _, body = await h2c.request(base_url, "GET", "/discover", [("accept", MANIFEST_V4)])
        assert json.loads(body)["protocolMode"] == "REQUEST_RESPONSE"


async def test_discovery_negotiates_the_manifest_version(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        only_v1 = await client.get(f"{endpoint}/discover", headers={"accept": "application/vnd.restate.endpointmanifest.v1+json"})
        v2 = await client.get(f"{endpoint}/discover", headers={"accept": MANIFEST_V2})

    assert only_v1.status_code == 415
    assert v2.headers["content-type"] == MANIFEST_V2


async def test_manifest_v2_rejects_fields_it_lacks() -> None:
    timed = sdk.Service("Timed", inactivity_timeout=timedelta(seconds=5))

    @timed.handler()
    async def noop(ctx: Context) -> None:
        return None

    async for base_url in serve(sdk.app([timed])):
        async with httpx.AsyncClient() as client:
            v2 = await client.get(f"{base_url}/discover", headers={"accept": MANIFEST_V2})
            v3 = await client.get(f"{base_url}/discover", headers={"accept": MANIFEST_V4.replace("v4", "v3")})
        assert v2.status_code == 500 and "inactivity_timeout" in v2.text
        assert v3.json()["services"][0]["inactivityTimeout"] == 5000


async def test_health(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{endpoint}/health")

    assert response.status_code == 200


# --- invocations --------------------------------------------------------------------------------


async def test_request_response_invocation_writes_output_and_end(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/greet", content=invocation_body(b'"ada"'), headers=invoke_headers())

    output, end = messages_of(response.content)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.restate.invocation.v6"
    assert isinstance(output, pb.OutputCommandMessage) and output.value.content == b'"hello ada"'
    assert isinstance(end, pb.EndMessage)


async def test_request_response_suspends_on_a_sleep(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/nap", content=invocation_body(b"60000"), headers=invoke_headers())

    sleep, suspension = messages_of(response.content)
    assert isinstance(sleep, pb.SleepCommandMessage)
    assert isinstance(suspension, pb.SuspensionMessage) and list(suspension.waiting_completions) == [1]


async def test_resumed_invocation_replays_and_finishes(endpoint: str) -> None:
    journal = (
        pb.SleepCommandMessage(wake_up_time=1, result_completion_id=1),
        pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void()),
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{endpoint}/invoke/Greeter/nap", content=invocation_body(b"60000", *journal), headers=invoke_headers()
        )

    output, end = messages_of(response.content)
    assert isinstance(output, pb.OutputCommandMessage) and output.value.content == b'"rested"'
    assert isinstance(end, pb.EndMessage)


async def test_request_response_run_proposes_then_suspends(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/compute", content=invocation_body(b""), headers=invoke_headers())

    run, proposal, suspension = messages_of(response.content)
    assert isinstance(run, pb.RunCommandMessage) and run.name == "compute"
    assert isinstance(proposal, pb.ProposeRunCompletionMessage) and proposal.value == b"42"
    assert isinstance(suspension, pb.SuspensionMessage)


async def test_terminal_error_becomes_an_output_failure(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/refuse", content=invocation_body(b"418"), headers=invoke_headers())

    output, end = messages_of(response.content)
    assert isinstance(output, pb.OutputCommandMessage)
    assert (output.failure.code, output.failure.message) == (418, "refused")
    assert isinstance(end, pb.EndMessage)


async def test_other_exceptions_become_an_error_message(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/crash", content=invocation_body(b""), headers=invoke_headers())

    [error] = messages_of(response.content)
    assert isinstance(error, pb.ErrorMessage)
    assert (error.code, error.message) == (500, "ValueError('bug')")
    assert "Traceback" in error.stacktrace


async def test_unparsable_input_is_a_terminal_400(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/greet", content=invocation_body(b"{nope"), headers=invoke_headers())

    output, _ = messages_of(response.content)
    assert isinstance(output, pb.OutputCommandMessage) and output.failure.code == 400


@pytest.mark.parametrize(
    "content_type", ["application/vnd.restate.invocation.v4", "application/vnd.restate.invocation.v8", "application/json", None]
)
async def test_unsupported_protocol_versions_get_415(endpoint: str, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/greet", content=invocation_body(b'"x"'), headers=headers)

    assert response.status_code == 415


async def test_unknown_handler_is_404(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{endpoint}/invoke/Greeter/missing", content=b"", headers=invoke_headers())

    assert response.status_code == 404


async def test_mount_prefix_is_ignored(endpoint: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{endpoint}/some/prefix/invoke/Greeter/greet", content=invocation_body(b'"x"'), headers=invoke_headers(7)
        )

    output, _ = messages_of(response.content)
    assert isinstance(output, pb.OutputCommandMessage) and output.value.content == b'"hello x"'


async def test_bidi_stream_resolves_notifications_while_the_handler_runs(endpoint: str, h2c: H2cClient) -> None:
    stream = await h2c.open_stream(endpoint, "POST", "/invoke/Greeter/nap", list(invoke_headers().items()))
    await stream.send(invocation_body(b"60000"))
    status, _ = await stream.response_headers()
    decoder = FrameDecoder()

    async def next_messages() -> list[Message]:
        frames = decoder.feed(await asyncio.wait_for(stream.read(), 5))
        return [decode_message(frame) for frame in frames]

    [sleep] = await next_messages()
    await stream.send(encode_message(pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void())))
    received = await next_messages()
    while len(received) < 2:
        received += await next_messages()
    output, end = received
    response_ended_early = await _ended_within(stream, 0.2)
    await stream.end()
    remaining = await asyncio.wait_for(stream.read(), 5)

    assert status == 200
    assert isinstance(sleep, pb.SleepCommandMessage)
    assert isinstance(output, pb.OutputCommandMessage) and output.value.content == b'"rested"'
    assert isinstance(end, pb.EndMessage)
    assert not response_ended_early, "the SDK must keep the response open until the runtime closes its side"
    assert remaining == b""


async def _ended_within(stream: Any, seconds: float) -> bool:
    try:
        chunk = await asyncio.wait_for(stream.read(), seconds)
    except TimeoutError:
        return False
    return chunk == b""


async def test_bidi_suspends_when_the_runtime_closes_the_request(endpoint: str, h2c: H2cClient) -> None:
    stream = await h2c.open_stream(endpoint, "POST", "/invoke/Greeter/nap", list(invoke_headers(7).items()))
    await stream.send(invocation_body(b"60000"))
    decoder = FrameDecoder()
    first: list[Frame] = []
    while len(first) < 2:  # the handler has slept and awaits its timer: only now does the runtime close the request
        first += decoder.feed(await asyncio.wait_for(stream.read(), 5))

    await stream.end()
    chunks = []
    while chunk := await asyncio.wait_for(stream.read(), 5):
        chunks.append(chunk)
    rest = decoder.feed(b"".join(chunks))
    types = [type(decode_message(frame)).__name__ for frame in first + rest]

    assert types == ["SleepCommandMessage", "AwaitingOnMessage", "SuspensionMessage"]


# --- request identity ---------------------------------------------------------------------------


def signing_key() -> tuple[Any, str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private_key = Ed25519PrivateKey.generate()
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private_key, "publickeyv1_" + base58(raw)


def base58(raw: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number = int.from_bytes(raw, "big")
    digits = ""
    while number:
        number, remainder = divmod(number, 58)
        digits = alphabet[remainder] + digits
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + digits


def jwt(private_key: Any, audience: str) -> str:
    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = encode(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    claims = encode(json.dumps({"aud": audience, "iat": now, "nbf": now - 5, "exp": now + 60}).encode())
    signature = encode(private_key.sign(f"{header}.{claims}".encode()))
    return f"{header}.{claims}.{signature}"


async def test_identity_keys_require_a_signed_request() -> None:
    private_key, public_key = signing_key()
    other_key, _ = signing_key()
    async for base_url in serve(sdk.app([greeter], identity_keys=[public_key])):
        async with httpx.AsyncClient() as client:
            unsigned = await client.get(f"{base_url}/discover", headers={"accept": MANIFEST_V4})
            signed = await client.get(
                f"{base_url}/discover",
                headers={"accept": MANIFEST_V4, "x-restate-signature-scheme": "v1", "x-restate-jwt-v1": jwt(private_key, "/discover")},
            )
            wrong_key = await client.get(
                f"{base_url}/discover",
                headers={"accept": MANIFEST_V4, "x-restate-signature-scheme": "v1", "x-restate-jwt-v1": jwt(other_key, "/discover")},
            )
            wrong_audience = await client.get(
                f"{base_url}/discover",
                headers={"accept": MANIFEST_V4, "x-restate-signature-scheme": "v1", "x-restate-jwt-v1": jwt(private_key, "/invoke/a/b")},
            )

        assert unsigned.status_code == 401
        assert signed.status_code == 200
        assert wrong_key.status_code == 401
        assert wrong_audience.status_code == 401
