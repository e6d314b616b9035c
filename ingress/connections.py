"""Bounds on the HTTP/1.1 connections of the ingress and admin servers: how many, how long idle, how slow, how large the headers.

`bounded_protocol(limits)` is a uvicorn protocol class (httptools parser) that

- answers a connection beyond `max_connections` with `503` and closes it at
  once, so idle or slow clients cannot take the descriptors the log and the
  state store need (refusals are logged at most once per `REFUSAL_LOG_INTERVAL_S`);
- closes a connection that sends no request within `idle_timeout_ms` of being
  opened (uvicorn's keep-alive timeout covers the time between requests);
- answers `408` and closes when a request's line and headers are not complete
  `header_read_timeout_ms` after its first byte (slow-header clients);
- answers `431` when the request line and headers exceed `max_header_bytes`
  or their count exceeds `max_header_count`, before any of it reaches the app;
- answers `400` naming the parser's complaint for a malformed request.

Error bodies are rendered by the server's API (`render_error`), so each API
keeps its own JSON shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("duro.http")

REFUSAL_LOG_INTERVAL_S = 10.0
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds of one server's connections (see the module docstring)."""

    name: str
    max_connections: int
    idle_timeout_ms: int
    header_read_timeout_ms: int
    max_header_bytes: int
    max_header_count: int
    render_error: Callable[[int, str], bytes]
    """The body of an error answered before the app saw the request (JSON in the API's shape)."""

    def __post_init__(self) -> None:
        for name in ("max_connections", "idle_timeout_ms", "header_read_timeout_ms", "max_header_bytes", "max_header_count"):
            assert getattr(self, name) > 0, f"{name} is positive"


class _Refusal(Exception):
    """A request that breaks a limit; raised inside the parser's callbacks, answered by `data_received`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Refusals:
    """Counts refused connections per server and logs them at most once per interval."""

    def __init__(self) -> None:
        self.count = 0
        self._logged_at = float("-inf")

    def note(self, limits: ConnectionLimits, open_connections: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_INTERVAL_S:
            self._logged_at = now
            log.warning(
                "%s: %d connections open, the most max_connections allows; refusing new ones with 503 (%d refused so far)",
                limits.name, open_connections, self.count,
            )  # fmt: skip


def bounded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """A uvicorn HTTP protocol class that enforces `limits` (pass it as `uvicorn.Config(http=...)`)."""

    class BoundedHttpToolsProtocol(_BoundedProtocol):
        pass

    BoundedHttpToolsProtocol.limits = limits
    BoundedHttpToolsProtocol.refusals = _Refusals()
    return BoundedHttpToolsProtocol


class _BoundedProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]
    refusals: ClassVar[_Refusals]

    _timer: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _header_count = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows the transport type too
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self.refusals.note(self.limits, len(self.connections))
            self._answer_and_close(503, f"too many open connections (max_connections={self.limits.max_connections}); retry shortly")
            return
        super().connection_made(transport)
        self._arm(self.limits.idle_timeout_ms, self._idle_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, timeout_ms: int, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(timeout_ms / 1000, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_expired(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _headers_expired(self) -> None:
        if not self.transport.is_closing():
            self._answer_and_close(
                408, f"the request's headers did not arrive within header_read_timeout_ms={self.limits.header_read_timeout_ms}"
            )

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0
        self._arm(self.limits.header_read_timeout_ms, self._headers_expired)

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            raise _Refusal(431, f"the request has more than max_header_count={self.limits.max_header_count} headers")
        super().on_header(name, value)

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Refusal(431, f"the request line and headers exceed max_header_bytes={self.limits.max_header_bytes}")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._answer_and_close(400, "protocol upgrades (WebSocket, h2c) are not supported; send HTTP/1.1 requests")
        except httptools.HttpParserError as error:
            refusal = error.__context__
            if isinstance(refusal, _Refusal):
                self._answer_and_close(refusal.status, refusal.message)
            else:
                self._answer_and_close(400, f"malformed HTTP request: {error}")

    def _answer_and_close(self, status: int, message: str) -> None:
        self._disarm()
        body = self.limits.render_error(status, message)
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
            status,
            _REASONS[status],
            len(body),
        )
        self.transport.write(head + body)
        self.transport.close()
