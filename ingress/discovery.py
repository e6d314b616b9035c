"""Discovery: asks a deployment what it serves (`GET {uri}/discover`) and validates the answer.

Over `http://` the request goes over HTTP/2 cleartext with prior knowledge
(`protocol.h2c.H2cClient`), over `https://` HTTP/2 over TLS chosen by ALPN, as
Restate does, unless `use_http_11` is set; then aiohttp speaks HTTP/1.1. Every
failure is a `DiscoveryError` whose message names the URI and the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from ingress.schema import DiscoveredEndpoint, services_from_manifest
from protocol.errors import H2cError, ManifestError
from protocol.h2c import H2cClient
from protocol.manifest import parse_manifest
from protocol.request_identity import RequestSigner
from protocol.versions import DISCOVERY_ACCEPT, parse_manifest_content_type

DEFAULT_CONNECT_TIMEOUT_MS: Final = 5_000
DEFAULT_TIMEOUT_MS: Final = 10_000
DEFAULT_MAX_MANIFEST_BYTES: Final = 10 * 1024 * 1024
DISCOVER_PATH: Final = "/discover"
X_RESTATE_SERVER: Final = "x-restate-server"

Discoverer = Callable[[str, dict[str, str], bool], Awaitable[DiscoveredEndpoint]]
"""`(uri, additional_headers, use_http_11) -> DiscoveredEndpoint`, as the admin API calls it."""


class DiscoveryError(Exception):
    """Discovery of a deployment failed; the message names the URI and the reason. `restate_code` as Restate's."""

    def __init__(self, uri: str, reason: str, restate_code: str | None = "META0003") -> None:
        super().__init__(f"discovery of {uri} failed: {reason}")
        self.uri = uri
        self.reason = reason
        self.restate_code = restate_code


class InvalidUriError(DiscoveryError):
    """The deployment URI itself is unusable (not absolute http/https, has a query, ...); nothing was sent."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(uri, reason, None)


async def discover(
    uri: str,
    additional_headers: dict[str, str] | None = None,
    use_http_11: bool = False,
    *,
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
    signer: RequestSigner | None = None,
) -> DiscoveredEndpoint:
    """Discover the endpoint at `uri`. Raises DiscoveryError, or SchemaError for an invalid service definition.

    `signer` adds Restate's request identity (the endpoint may require it).
    """
    origin, path = _split_uri(uri, use_http_11)
    headers = [("accept", DISCOVERY_ACCEPT), *((k, v) for k, v in (additional_headers or {}).items())]
    if signer is not None:
        headers.extend(signer.headers(path))
    if use_http_11:
        status, response_headers, body = await _get_http11(uri, origin + path, headers, connect_timeout_ms, timeout_ms, max_manifest_bytes)
    else:
        status, response_headers, body = await _get_h2c(uri, origin, path, headers, connect_timeout_ms, timeout_ms, max_manifest_bytes)
    return _endpoint(uri, use_http_11, status, response_headers, body)


def discoverer_with(connect_timeout_ms: int, timeout_ms: int, max_manifest_bytes: int, signer: RequestSigner | None = None) -> Discoverer:
    """A `Discoverer` with these limits (what the admin API uses by default), signing its requests with `signer`."""

    async def run(uri: str, additional_headers: dict[str, str], use_http_11: bool) -> DiscoveredEndpoint:
        return await discover(
            uri,
            additional_headers,
            use_http_11,
            connect_timeout_ms=connect_timeout_ms,
            timeout_ms=timeout_ms,
            max_manifest_bytes=max_manifest_bytes,
            signer=signer,
        )

    return run


def _split_uri(uri: str, use_http_11: bool) -> tuple[str, str]:
    """(origin, path of the discover request) of a deployment URI."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUriError(uri, "the URI must be absolute, e.g. 'http://host:9080' (schemes http and https)")
    if parts.query or parts.fragment:
        raise InvalidUriError(uri, "the URI must not have a query or a fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise InvalidUriError(uri, f"bad port: {error}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}", parts.path.rstrip("/") + DISCOVER_PATH


async def _get_h2c(
    uri: str, origin: str, path: str, headers: list[tuple[str, str]], connect_timeout_ms: int, timeout_ms: int, max_bytes: int
) -> tuple[int, list[tuple[str, str]], bytes]:
    client = H2cClient(max_connections_per_origin=1, connect_timeout_ms=connect_timeout_ms)
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            return await client.request(origin, "GET", path, headers, max_body_bytes=max_bytes, timeout_ms=timeout_ms)
    except TimeoutError:
        raise DiscoveryError(uri, f"timeout after {timeout_ms} ms waiting for the discovery response") from None
    except H2cError as error:
        if "refused" in error.reason:
            raise DiscoveryError(uri, f"cannot connect: {error.reason}") from None
        raise DiscoveryError(
            uri,
            f"HTTP/2 (h2c prior knowledge) request failed: {error.reason}. If the endpoint only speaks HTTP/1.1,"
            " register it with use_http_11=true",
            "META0014",
        ) from None
    finally:
        await client.aclose()


async def _get_http11(
    uri: str, url: str, headers: list[tuple[str, str]], connect_timeout_ms: int, timeout_ms: int, max_bytes: int
) -> tuple[int, list[tuple[str, str]], bytes]:
    timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000, connect=connect_timeout_ms / 1000)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as session,
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            body = await _read_limited(uri, response, max_bytes)
            return response.status, [(k.lower(), v) for k, v in response.headers.items()], body
    except TimeoutError:
        raise DiscoveryError(uri, f"timeout after {timeout_ms} ms waiting for the discovery response") from None
    except aiohttp.ClientConnectorError as error:
        raise DiscoveryError(uri, f"cannot connect: {_connect_reason(error)}") from None
    except aiohttp.ClientResponseError as error:  # its text quotes what the endpoint sent: not echoed
        raise DiscoveryError(uri, f"the endpoint did not answer with valid HTTP/1.1 (status {error.status})") from None
    except aiohttp.ClientError as error:
        raise DiscoveryError(uri, f"HTTP/1.1 request failed: {type(error).__name__}") from None


async def _read_limited(uri: str, response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise DiscoveryError(uri, f"the discovery response exceeds max_manifest_bytes ({max_bytes})")
        chunks.append(chunk)
    return b"".join(chunks)


def _connect_reason(error: aiohttp.ClientConnectorError) -> str:
    if isinstance(error.os_error, ConnectionRefusedError):
        return "connection refused"
    return str(error.os_error or error)


def _endpoint(uri: str, use_http_11: bool, status: int, headers: list[tuple[str, str]], body: bytes) -> DiscoveredEndpoint:
    if not 200 <= status < 300:
        raise DiscoveryError(uri, _status_reason(status, body))
    content_type = _header(headers, "content-type")
    if content_type is None:
        raise DiscoveryError(uri, f"the response ({len(body)} bytes) has no content-type; expected a manifest type", "META0013")
    try:
        manifest = parse_manifest(body, content_type)
    except ManifestError as error:
        raise DiscoveryError(uri, f"not a manifest: {error.reason}", "META0013") from None
    return DiscoveredEndpoint(
        uri=uri,
        use_http_11=use_http_11,
        protocol_mode=manifest.protocol_mode.value,
        min_protocol_version=manifest.min_protocol_version,
        max_protocol_version=manifest.max_protocol_version,
        manifest_version=parse_manifest_content_type(content_type),
        sdk_version=_header(headers, X_RESTATE_SERVER),
        services=services_from_manifest(manifest),
    )


def _status_reason(status: int, body: bytes) -> str:
    """Why a non-2xx discovery answer failed; the answer's body is not echoed (the admin API must not read out other services)."""
    if status == 404:
        return "got status code 404. Make sure the provided URI has the correct path where the Restate SDK endpoint is mounted"
    return f"got status code {status} ({len(body)} bytes of body, not shown)"


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None
