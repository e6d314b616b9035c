"""Serves services over ASGI: `GET /discover`, `POST /invoke/{service}/{handler}` and `GET /health`.

Paths are matched by their suffix, so the app works under any mount prefix.
Over HTTP/2 the endpoint advertises BIDI_STREAM, over HTTP/1.1
REQUEST_RESPONSE, unless `protocol=` forces one. An invocation answers 200
with the negotiated `application/vnd.restate.invocation.vN` content type and
streams protocol frames; unsupported versions get 415. In bidirectional mode
the response ends only after the runtime closed the request body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Literal

from protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_SERVICE_PROTOCOL_VERSION,
    MIN_SERVICE_PROTOCOL_VERSION,
    VersionError,
    invocation_content_type,
    manifest_content_type,
    parse_invocation_content_type,
)
from protocol.manifest import ProtocolMode
from sdk._attempt import DEFAULT_INPUT_CLOSE_TIMEOUT_MS, Attempt
from sdk._context import context_class_for
from sdk._discovery import ManifestVersionError, manifest_json, negotiate_manifest_version
from sdk._errors import DisconnectedError
from sdk._handler import Handler
from sdk._identity import IdentityError, IdentityVerifier
from sdk._machine import Machine
from sdk._outcomes import InvocationInput
from sdk._service import AnyService

logger = logging.getLogger("sdk")

SDK_VERSION = "0.1.0"
SERVER_HEADER = (b"x-restate-server", f"duro-sdk-python/{SDK_VERSION}".encode())
PROTOCOL_MODES: dict[str, ProtocolMode] = {
    "bidi": ProtocolMode.BIDI_STREAM,
    "request_response": ProtocolMode.REQUEST_RESPONSE,
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AsgiTransport:
    """The request and response bodies of an ASGI HTTP request, as the attempt's Transport."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._ended = False

    async def receive(self) -> bytes | None:
        """The next non-empty body chunk, None once the body ended; DisconnectedError on disconnect."""
        while not self._ended:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._ended = True
                raise DisconnectedError()
            body = message.get("body", b"")
            self._ended = not message.get("more_body", False)
            if body:
                return bytes(body)
        return None

    async def send(self, data: bytes) -> None:
        """Writes `data` as a response body chunk."""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})


class SdkApp:
    """The ASGI application serving a set of services."""

    def __init__(
        self,
        services: Iterable[AnyService],
        protocol: Literal["bidi", "request_response"] | None = None,
        identity_keys: Sequence[str] | None = None,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        input_close_timeout_ms: int = DEFAULT_INPUT_CLOSE_TIMEOUT_MS,
    ) -> None:
        if protocol is not None and protocol not in PROTOCOL_MODES:
            raise ValueError(f"protocol must be None, 'bidi' or 'request_response'; got {protocol!r}")
        self.services: dict[str, AnyService] = {}
        for service in services:
            if service.name in self.services:
                raise ValueError(f"service {service.name} is bound twice")
            self.services[service.name] = service
        self.protocol = protocol
        self.max_frame_bytes = max_frame_bytes
        self.input_close_timeout_ms = input_close_timeout_ms
        self._verifier = IdentityVerifier(identity_keys or ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = _headers(scope)
        if path.endswith("/health") or path == "/health":
            await _respond(send, 200, b'{"status":"ok"}', "application/json")
            return
        try:
            self._verifier.verify(headers, path)
        except IdentityError as error:
            await _respond(send, 401, f"request identity check failed: {error}".encode())
            return
        if path.rsplit("/", 1)[-1] == "discover":
            await self._discover(scope, headers, send)
            return
        target = _invoke_target(path)
        if target is None:
            await _respond(send, 404, f"no route for {path}; expected /discover, /health or /invoke/S/H".encode())
            return
        await self._invoke(target, headers, receive, send)

    async def _discover(self, scope: Scope, headers: Mapping[str, str], send: Send) -> None:
        version = negotiate_manifest_version(headers.get("accept"))
        if version is None:
            message = f"no supported manifest version in accept {headers.get('accept')!r}; expected one of v2..v4"
            await _respond(send, 415, message.encode())
            return
        mode = PROTOCOL_MODES[self.protocol or _mode_for_http_version(scope.get("http_version", "1.1"))]
        try:
            body = manifest_json(self.services.values(), version, mode)
        except ManifestVersionError as error:
            await _respond(send, 500, str(error).encode())
            return
        await _respond(send, 200, body, manifest_content_type(version))

    async def _invoke(self, target: tuple[str, str], headers: Mapping[str, str], receive: Receive, send: Send) -> None:
        handler = self._handler(*target)
        if handler is None:
            await _respond(send, 404, f"unknown handler {target[0]}/{target[1]}".encode())
            return
        try:
            version = _protocol_version(headers.get("content-type"))
        except VersionError as error:
            await _respond(send, 415, str(error).encode())
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", invocation_content_type(version).encode()), SERVER_HEADER],
            }
        )
        machine = Machine(version, max_frame_bytes=self.max_frame_bytes)
        attempt = Attempt(machine, handler, AsgiTransport(receive, send))
        try:
            await self._run_attempt(attempt, dict(headers))
        except DisconnectedError:
            logger.info("the runtime disconnected during %s/%s", *target)
        finally:
            await attempt.close(self.input_close_timeout_ms)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (OSError, RuntimeError) as error:
            logger.info("cannot end the response of %s/%s, the runtime is gone: %s", *target, error)

    async def _run_attempt(self, attempt: Attempt, attempt_headers: dict[str, str]) -> None:
        context_class = context_class_for(attempt.handler)

        def make_context(current: Attempt, invocation: InvocationInput) -> Any:
            return context_class(current, invocation, attempt_headers)

        if await attempt.read_until_ready():
            await attempt.execute(make_context)
        else:
            await attempt.flush()

    def _handler(self, service_name: str, handler_name: str) -> Handler | None:
        service = self.services.get(service_name)
        return None if service is None else service.handlers.get(handler_name)


def app(
    services: Iterable[AnyService],
    protocol: Literal["bidi", "request_response"] | None = None,
    identity_keys: list[str] | None = None,
    journal_value_codec: None = None,
) -> SdkApp:
    """The ASGI app serving `services` (serve it with hypercorn, over h2c or HTTP/1.1).

    `identity_keys` (publickeyv1_...) make the app reject requests not signed by the runtime.
    `journal_value_codec` exists for signature compatibility only; duro's SDK has no codecs.
    """
    if journal_value_codec is not None:
        raise ValueError("journal_value_codec is not supported by duro's SDK; pass None")
    return SdkApp(services, protocol=protocol, identity_keys=identity_keys)


def _invoke_target(path: str) -> tuple[str, str] | None:
    parts = path.rsplit("/", 3)
    if len(parts) == 4 and parts[1] == "invoke" and parts[2] and parts[3]:
        return parts[2], parts[3]
    return None


def _protocol_version(content_type: str | None) -> int:
    """The service protocol version named by the request; raises VersionError (a 415) otherwise."""
    supported = f"{invocation_content_type(MIN_SERVICE_PROTOCOL_VERSION)}..v{MAX_SERVICE_PROTOCOL_VERSION}"
    if content_type is None:
        raise VersionError(f"missing content-type; expected {supported}")
    version = parse_invocation_content_type(content_type)
    if not MIN_SERVICE_PROTOCOL_VERSION <= version <= MAX_SERVICE_PROTOCOL_VERSION:
        raise VersionError(f"service protocol version {version} is not supported; expected {supported}")
    return version


def _mode_for_http_version(http_version: str) -> str:
    return "request_response" if http_version in ("1.0", "1.1") else "bidi"


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


async def _respond(send: Send, status: int, body: bytes, content_type: str = "text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), SERVER_HEADER],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
