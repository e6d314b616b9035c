"""Discovery and registration against real endpoints: the official Python SDK under hypercorn (h2c and HTTP/1.1).

The SDK app runs in-process under a real hypercorn server on a real socket;
the admin API app is driven through httpx's ASGI transport and discovers the
endpoint over the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import restate
import uvicorn
from hypercorn.asyncio import serve
from hypercorn.config import Config

from ingress.admin import build_admin_app
from ingress.discovery import DiscoveryError, discover
from ingress.registry import Registry
from ingress.settings import IngressSettings
from wal.memory import MemoryLog
from wal.records import HandlerKind, ServiceType
from wal.replies import ReplyBus

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# ---------------------------------------------------------------- the SDK services

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


@greeter.handler()
async def wave(ctx: restate.Context) -> None:
    return None


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, amount: int) -> int:
    return amount


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return 0


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    return email


@signup.handler()
async def status(ctx: restate.WorkflowSharedContext) -> str:
    return "pending"


greeter_v2 = restate.Service("Greeter")  # `wave` removed: an incompatible change


@greeter_v2.handler(name="greet")
async def greet_v2(ctx: restate.Context, name: str) -> str:
    return f"hi {name}"


APP_V1 = restate.app(services=[greeter, counter, signup])
APP_V2 = restate.app(services=[greeter_v2, counter, signup])


class Switchable:
    """An ASGI app that forwards to whichever SDK app is current (the same URI serving a new build)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def static_app(status: int, content_type: bytes, body: bytes) -> ASGIApp:
    """An ASGI app that answers every request with the same response."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": body})

    return app


not_a_manifest = static_app(200, b"text/html", b"<html>hello</html>")


# ---------------------------------------------------------------- servers


@contextlib.asynccontextmanager
async def hypercorn_server(app: Any) -> AsyncIterator[str]:
    """Serve `app` with hypercorn on a free loopback port (h2c prior knowledge and HTTP/1.1); yield its URI."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.graceful_timeout = 1
    config.keep_alive_timeout = 30
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        await wait_listening(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        with contextlib.suppress(OSError):
            sock.close()  # hypercorn usually closed the descriptor already


@contextlib.asynccontextmanager
async def http11_only_server(app: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn, which speaks HTTP/1.1 only."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return


def closed_port_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def admin() -> AsyncIterator[tuple[httpx.AsyncClient, Registry]]:
    registry = Registry()
    settings = IngressSettings(discovery_timeout_ms=5_000, discovery_connect_timeout_ms=2_000)
    app = build_admin_app(MemoryLog(1), registry, ReplyBus(1), settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin", timeout=30) as client:
        yield client, registry


# ---------------------------------------------------------------- tests


async def test_discover_over_h2c_reads_the_sdk_manifest() -> None:
    async with hypercorn_server(APP_V1) as uri:
        endpoint = await discover(uri)
    assert endpoint.protocol_mode == "BIDI_STREAM"
    assert endpoint.min_protocol_version <= 5 <= endpoint.max_protocol_version
    assert endpoint.sdk_version is not None and endpoint.sdk_version.startswith("restate-sdk-python/")
    assert 1 <= endpoint.manifest_version <= 4
    services = {s.name: s for s in endpoint.services}
    assert services["Counter"].service_type is ServiceType.VIRTUAL_OBJECT
    assert services["Counter"].handlers["get"].kind is HandlerKind.SHARED
    assert services["Signup"].handlers["run"].kind is HandlerKind.WORKFLOW
    assert services["Greeter"].handlers["greet"].kind is None
    assert services["Greeter"].handlers["greet"].input.json_schema == {"type": "string"}


async def test_register_reregister_change_and_force_over_h2c(admin: tuple[httpx.AsyncClient, Registry]) -> None:
    client, registry = admin
    app = Switchable(APP_V1)
    async with hypercorn_server(app) as uri:
        created = await client.post("/v3/deployments", json={"uri": uri})
        assert created.status_code == 201, created.text
        deployment_id = created.json()["id"]
        assert created.json()["sdk_version"].startswith("restate-sdk-python/")
        detailed = (await client.get(f"/deployments/{deployment_id}")).json()
        assert detailed["protocol_type"] == "BidiStream" and detailed["http_version"] == "HTTP/2.0"

        same = await client.post("/v3/deployments", json={"uri": uri})
        assert same.status_code == 200 and same.json()["id"] == deployment_id

        app.app = APP_V2
        conflict = await client.post("/v3/deployments", json={"uri": uri})
        assert conflict.status_code == 409
        assert "wave" in conflict.json()["message"]
        assert registry.handler_target("Greeter", "wave") == (ServiceType.SERVICE, None)

        forced = await client.post("/v3/deployments", json={"uri": uri, "force": True})
        assert forced.status_code == 200 and forced.json()["id"] == deployment_id
        assert registry.handler_target("Greeter", "wave") is None
        assert registry.service("Greeter").revision == 2  # type: ignore[union-attr]


async def test_register_over_http_1_1(admin: tuple[httpx.AsyncClient, Registry]) -> None:
    client, registry = admin
    async with hypercorn_server(APP_V1) as uri:
        created = await client.post("/deployments", json={"uri": uri, "use_http_11": True})
    assert created.status_code == 201, created.text
    deployment = registry.deployment(created.json()["id"])
    assert deployment is not None and deployment.use_http_11
    assert deployment.protocol_mode == "REQUEST_RESPONSE"
    detailed = (await client.get(f"/deployments/{deployment.id}")).json()
    assert detailed["protocol_type"] == "RequestResponse" and detailed["http_version"] == "HTTP/1.1"


@pytest.mark.parametrize("use_http_11", [False, True])
async def test_unreachable_uri_names_the_reason_and_registers_nothing(admin: tuple[httpx.AsyncClient, Registry], use_http_11: bool) -> None:
    client, registry = admin
    uri = closed_port_uri()
    response = await client.post("/deployments", json={"uri": uri, "use_http_11": use_http_11})
    assert response.status_code == 502
    message = response.json()["message"]
    assert uri in message and "refused" in message
    assert registry.deployments() == [] and registry.services() == []


@pytest.mark.parametrize("use_http_11", [False, True])
async def test_non_manifest_answer_is_an_error(admin: tuple[httpx.AsyncClient, Registry], use_http_11: bool) -> None:
    client, registry = admin
    async with hypercorn_server(not_a_manifest) as uri:
        response = await client.post("/deployments", json={"uri": uri, "use_http_11": use_http_11})
    assert response.status_code == 502
    message = response.json()["message"]
    assert uri in message and "not a manifest" in message and "text/html" in message
    assert registry.deployments() == []


async def test_404_names_the_status_and_hints_at_the_path() -> None:
    async with hypercorn_server(static_app(404, b"text/plain", b"no such route")) as uri:
        with pytest.raises(DiscoveryError) as raised:
            await discover(uri + "/wrong/prefix")
    assert "404" in raised.value.reason and "path" in raised.value.reason
    assert "no such route" not in raised.value.reason, "the endpoint's body is not echoed"
    assert uri + "/wrong/prefix" in str(raised.value)


async def test_discovery_uses_the_uri_path_as_prefix() -> None:
    seen: list[str] = []

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await APP_V1(scope, receive, send)

    async with hypercorn_server(recording) as uri:
        endpoint = await discover(uri + "/svc/")
    assert seen == ["/svc/discover"]
    assert endpoint.uri == uri + "/svc/"


async def test_h2c_against_an_http_1_1_only_server_suggests_use_http_11() -> None:
    async with http11_only_server(not_a_manifest) as uri:
        with pytest.raises(DiscoveryError) as raised:
            await discover(uri, connect_timeout_ms=2_000, timeout_ms=3_000)
    assert "use_http_11" in str(raised.value)


@pytest.mark.parametrize("use_http_11", [False, True])
async def test_silent_endpoint_times_out(use_http_11: bool) -> None:
    async with silent_server() as uri:
        with pytest.raises(DiscoveryError) as raised:
            await discover(uri, use_http_11=use_http_11, connect_timeout_ms=300, timeout_ms=300)
    assert uri in str(raised.value)
    assert "300" in str(raised.value) or "timed out" in str(raised.value)


@pytest.mark.parametrize(
    ("uri", "use_http_11", "fragment"),
    [
        ("localhost:9080", False, "absolute"),
        ("ftp://host/x", False, "absolute"),
        ("http://host:9080/?x=1", False, "query"),
    ],
)
async def test_bad_uris_are_rejected_before_any_request(uri: str, use_http_11: bool, fragment: str) -> None:
    with pytest.raises(DiscoveryError, match=fragment):
        await discover(uri, use_http_11=use_http_11)
