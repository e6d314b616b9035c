"""A full-duplex asyncio HTTP/2 client for the invoker's streams: cleartext (prior knowledge) for http, TLS with ALPN h2 for https.

`H2cClient` keeps a pool of connections per origin. Each request is an
`H2Stream`: the caller sends request body chunks and reads response body
chunks at the same time, which bidirectional service protocol streams need.
A pool multiplexes streams over a connection up to the peer's
SETTINGS_MAX_CONCURRENT_STREAMS and opens another connection when all are
full, up to `max_connections_per_origin`.

Failures never hang: a GOAWAY, RST_STREAM, refused or reset connection, or
EOF makes every pending operation on the affected streams raise
`StreamClosedError` or `ConnectionLostError` at once. A peer that stops
answering is noticed too: every connection sends a PING each
`ping_interval_ms` and is declared dead (its streams fail, its socket is
aborted) when no ACK comes within `ping_timeout_ms`; a stream whose response
headers do not come within the caller's timeout fails with
`StreamTimeoutError`, and a connection on which
`max_stream_timeouts_per_connection` streams in a row timed out takes no new
streams (they go to a fresh connection). The `h2` library treats
a received GOAWAY as the end of the connection, so every stream on it fails;
those above the GOAWAY's last_stream_id were never processed and carry
`retry_safe=True`. New streams then go to a fresh connection.

Cancellation: cancelling a task blocked in `send`, `read` or
`response_headers` leaves the stream open; call `reset()` or `aclose()`.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextlib
import logging
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from protocol.errors import ConnectionLostError, H2cError, StreamClosedError, StreamTimeoutError
from protocol.header_block import CachingEncoder

__all__ = [
    "ConnectionLostError",
    "H2Stream",
    "H2cClient",
    "H2cError",
    "StreamClosedError",
    "StreamTimeoutError",
]

DEFAULT_MAX_CONNECTIONS_PER_ORIGIN: Final = 8
DEFAULT_CONNECT_TIMEOUT_MS: Final = 10_000
DEFAULT_MAX_RECV_BUFFER_BYTES: Final = 1024 * 1024
DEFAULT_MAX_CONNECTION_RECV_BUFFER_BYTES: Final = 16 * 1024 * 1024
DEFAULT_STREAM_WAIT_TIMEOUT_MS: Final = 30_000
DEFAULT_MAX_BODY_BYTES: Final = 32 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT_MS: Final = 30_000
DEFAULT_CLOSE_TIMEOUT_MS: Final = 1_000
DEFAULT_PING_INTERVAL_MS: Final = 10_000
DEFAULT_PING_TIMEOUT_MS: Final = 10_000
DEFAULT_MAX_STREAM_TIMEOUTS_PER_CONNECTION: Final = 2
DEFAULT_STREAM_END_GRACE_MS: Final = 1_000
DEFAULT_MAX_CLOSED_STREAMS_PER_CONNECTION: Final = 4_096
"""Closed streams a connection remembers (how each was closed, so a late frame on one is answered, not a protocol error).

h2's own bound is 65,536, about 11 MiB per connection once a connection has
closed that many streams; at the soak's 100 invocations/s that took 11 minutes
to fill, one of the slow rises of the node's RSS. Streams are reset at most
`stream_end_grace_ms` after their request ended, so a late frame comes within
moments, not 4,096 streams later.
"""

_SOCKET_READ_BYTES: Final = 64 * 1024
_FRAME_HEADER_BYTES: Final = 9
_H2_DEFAULT_WINDOW_BYTES: Final = 65_535

_log = logging.getLogger(__name__)

Headers = list[tuple[str, str]]


_H2_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding="utf-8",
    # The request headers are built here (lower-case names; deployment headers are checked when registered), so h2's
    # per-stream outbound validation and normalisation only cost time: about a fifth of opening a stream.
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


@dataclass(frozen=True)
class _Origin:
    host: str
    port: int
    tls: bool = False  # https: TLS with ALPN "h2"

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"


def _parse_origin(origin: str) -> _Origin:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise H2cError(f"origin {origin!r} is not supported; expected 'http://host:port' (h2c) or 'https://host:port' (h2 over TLS)")
    if parts.path not in ("", "/") or parts.query:
        raise H2cError(f"origin {origin!r} has a path or query; expected 'http://host:port'")
    tls = parts.scheme == "https"
    return _Origin(parts.hostname, parts.port or (443 if tls else 80), tls)


def _tls_context() -> ssl.SSLContext:
    """The system's trust store (or `SSL_CERT_FILE`), offering only HTTP/2 by ALPN."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2"])
    return context


class _Wakeup:
    """`asyncio.Event` for a stream's reader or writer, bound to its connection's loop.

    The same set/clear/wait, without asyncio's running-loop check on every
    wait (a getpid system call in CPython 3.11) and its deque of waiters.
    """

    __slots__ = ("_is_set", "_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._is_set = False
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        if not self._is_set:
            self._is_set = True
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> None:
        if self._is_set:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)


class H2Stream:
    """One request/response exchange; sending and reading may run concurrently."""

    def __init__(self, connection: _Connection, stream_id: int) -> None:
        self.stream_id = stream_id
        self._connection = connection
        self._chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self._status: int | None = None
        self._headers: Headers = []
        self.trailers: Headers = []
        self._remote_ended = False
        self._local_ended = False
        self._error: H2cError | None = None
        self._released = False
        self._abandoned = False  # closed by the client after its request ended: waits (bounded) for the response's end
        self._grace: asyncio.TimerHandle | None = None
        self._overdue = False  # the `response_headers` timeout passed
        self._recv_event = _Wakeup(connection.loop)
        self._send_event = _Wakeup(connection.loop)

    @property
    def finished(self) -> bool:
        """True once both directions ended normally or the stream failed."""
        return self._error is not None or (self._local_ended and self._remote_ended)

    async def send(self, data: bytes) -> None:
        """Sends a request body chunk, waiting for flow-control window as needed."""
        view = memoryview(data)
        while view:
            self._check_sendable()
            window = self._connection.sendable_bytes(self.stream_id)
            if window <= 0:
                self._send_event.clear()
                await self._connection.flush()  # frames queued so far (a deferred HEADERS) go out before the wait
                await self._send_event.wait()
                continue
            chunk, view = view[:window], view[window:]
            self._connection.send_data(self.stream_id, bytes(chunk))
            await self._connection.flush()

    async def end(self) -> None:
        """Ends the request body (END_STREAM); the frame leaves at the end of this turn of the event loop (`write_soon`)."""
        self._check_sendable()
        self._connection.end_stream(self.stream_id)
        self._local_ended = True
        self._release_if_finished()
        self._connection.write_soon()  # the END_STREAM goes with what other streams write in this turn of the loop

    async def response_headers(self, timeout_ms: int | None = None) -> tuple[int, Headers]:
        """Waits for the response status and headers (pseudo-headers removed).

        With `timeout_ms`, a response that has not begun by then resets the
        stream and raises StreamTimeoutError; the connection counts it (see
        `max_stream_timeouts_per_connection`).
        """
        # A timer on the connection's loop instead of `asyncio.timeout`: no task cancellation, no running-loop lookups.
        timer = None if timeout_ms is None else self._connection.loop.call_later(timeout_ms / 1000, self._headers_overdue)
        try:
            while self._status is None:
                if self._error is not None:
                    raise self._error
                if self._overdue:
                    self.reset()
                    self._connection.stream_timed_out()
                    raise StreamTimeoutError(
                        f"stream {self.stream_id}: no response headers from {self._connection.origin} within {timeout_ms} ms"
                    )
                self._recv_event.clear()
                await self._recv_event.wait()
        finally:
            if timer is not None:
                timer.cancel()
        return self._status, list(self._headers)

    def _headers_overdue(self) -> None:
        self._overdue = True
        self._recv_event.set()

    async def read(self) -> bytes:
        """The next response body chunk, or b"" once the response has ended.

        Reading hands the consumed bytes back to the peer's flow-control window.
        """
        while True:
            if self._chunks:
                data, flow_controlled_bytes = self._chunks.popleft()
                self._connection.acknowledge(self.stream_id, flow_controlled_bytes)
                return data
            if self._remote_ended:
                return b""
            if self._error is not None:
                raise self._error
            self._recv_event.clear()
            await self._recv_event.wait()

    def reset(self) -> None:
        """Abandons the stream (RST_STREAM CANCEL) unless it already finished.

        Unread response data is dropped and its window handed back.
        """
        self._discard_unread()
        if self.finished:
            self._release()
            return
        self._connection.reset_stream(self.stream_id)
        self._fail(StreamClosedError(f"stream {self.stream_id} was reset by this client"))

    async def aclose(self) -> None:
        """Frees the stream's slot; resets it if it is unfinished.

        A stream whose request ended and whose response has not yet is given
        `stream_end_grace_ms` to end by itself (an SDK ends its response right
        after its last message) before it is reset: most streams then end
        without a RST_STREAM written, and what still arrives is acknowledged
        and dropped.
        """
        if self._local_ended and self._error is None and not self._remote_ended and not self._abandoned:
            self._discard_unread()
            self._abandoned = True
            self._grace = self._connection.loop.call_later(self._connection.end_grace_s, self.reset)
            return
        self.reset()  # its RST_STREAM leaves with whatever else is written in this turn of the event loop (`write_soon`)

    def _discard_unread(self) -> None:
        unread_bytes = sum(flow_controlled for _, flow_controlled in self._chunks)
        self._chunks.clear()
        self._connection.acknowledge(self.stream_id, unread_bytes)

    def _check_sendable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._local_ended:
            raise H2cError(f"stream {self.stream_id}: request body already ended")
        self._connection.raise_if_closed()

    # Called by the connection as frames arrive.

    def _on_headers(self, headers: Headers) -> None:
        status = next((value for name, value in headers if name == ":status"), None)
        if status is None or not status.isdigit():
            self._connection.reset_stream(self.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self._fail(StreamClosedError(f"stream {self.stream_id}: response without a valid :status"))
            return
        self._status = int(status)
        self._headers = [(name, value) for name, value in headers if not name.startswith(":")]
        self._connection.stream_answered()
        self._recv_event.set()

    def _on_data(self, data: bytes, flow_controlled_bytes: int) -> None:
        if self._abandoned:
            self._connection.acknowledge(self.stream_id, flow_controlled_bytes)
            return
        self._chunks.append((data, flow_controlled_bytes))
        self._recv_event.set()

    def _on_end(self) -> None:
        self._remote_ended = True
        self._recv_event.set()
        self._release_if_finished()

    def _on_window(self) -> None:
        self._send_event.set()

    def _fail(self, error: H2cError) -> None:
        if self._error is None and not (self._local_ended and self._remote_ended):
            self._error = error
        self._recv_event.set()
        self._send_event.set()
        self._release()

    def _release_if_finished(self) -> None:
        if self._local_ended and self._remote_ended:
            self._release()

    def _release(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
        if not self._released:
            self._released = True
            self._connection.stream_released(self)


@dataclass(frozen=True, slots=True)
class _ConnectionLimits:
    max_recv_buffer_bytes: int
    max_connection_recv_buffer_bytes: int
    ping_interval_ms: int  # 0: no keepalive
    ping_timeout_ms: int
    max_stream_timeouts: int
    stream_end_grace_ms: int = DEFAULT_STREAM_END_GRACE_MS
    max_closed_streams: int = DEFAULT_MAX_CLOSED_STREAMS_PER_CONNECTION


class _BoundedH2Connection(h2.connection.H2Connection):
    """h2's connection state machine, remembering at most `max_closed_streams` closed streams (h2 reads the bound in `__init__`)."""

    def __init__(self, config: h2.config.H2Configuration, max_closed_streams: int) -> None:
        self.MAX_CLOSED_STREAMS = max_closed_streams
        super().__init__(config=config)


class _Connection:
    """One TCP connection speaking HTTP/2 to an origin; a reader task dispatches frames, a keepalive task pings."""

    def __init__(
        self,
        origin: _Origin,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_change: collections.abc.Callable[[], None],
        limits: _ConnectionLimits,
    ) -> None:
        self.origin = origin
        self._reader = reader
        self._writer = writer
        self._on_change = on_change
        self._limits = limits
        self._h2 = _BoundedH2Connection(_H2_CONFIG, limits.max_closed_streams)
        self._h2.encoder = CachingEncoder()  # no dynamic table, each header's bytes reused (protocol/header_block.py)
        self._streams: dict[int, H2Stream] = {}
        self._inbound = bytearray()
        self._settings_received = asyncio.Event()
        self._ping_acked = asyncio.Event()
        self._closed_error: ConnectionLostError | None = None
        self.no_new_streams = False
        self._stream_timeouts_in_a_row = 0
        self._write_scheduled = False  # a `write_soon` is pending
        self.loop = asyncio.get_running_loop()  # kept: in CPython 3.11 each lookup of the running loop is a getpid system call
        self._start_h2(limits.max_recv_buffer_bytes, limits.max_connection_recv_buffer_bytes)
        self._reader_task = self.loop.create_task(self._read_loop(), name=f"h2c-reader {origin}")
        self._reader_task.add_done_callback(self._reader_done)
        self._keepalive_task: asyncio.Task[None] | None = None
        if limits.ping_interval_ms > 0:
            self._keepalive_task = asyncio.create_task(self._keepalive(), name=f"h2c-keepalive {origin}")
            self._keepalive_task.add_done_callback(self._reader_done)

    @classmethod
    async def connect(
        cls,
        origin: _Origin,
        on_change: collections.abc.Callable[[], None],
        connect_timeout_ms: int,
        limits: _ConnectionLimits,
    ) -> _Connection:
        """Opens a connection and waits for the server's SETTINGS."""
        timeout_s = connect_timeout_ms / 1000
        try:
            if origin.tls:
                opening = asyncio.open_connection(origin.host, origin.port, ssl=_tls_context(), server_hostname=origin.host)
            else:
                opening = asyncio.open_connection(origin.host, origin.port)
            reader, writer = await asyncio.wait_for(opening, timeout_s)
        except (OSError, TimeoutError) as error:
            reason = f"connecting to {origin} failed: {_describe(error)}"
            raise ConnectionLostError(reason, retry_safe=True) from None
        if origin.tls:
            ssl_object = writer.get_extra_info("ssl_object")
            negotiated = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            if negotiated != "h2":
                writer.close()
                reason = f"{origin} did not agree to HTTP/2 over TLS (ALPN chose {negotiated!r}); register it with use_http_11=true"
                raise ConnectionLostError(reason, retry_safe=False)
        connection = cls(origin, reader, writer, on_change, limits)
        try:
            await connection._await_settings(timeout_s)
        except BaseException:
            connection.close_now("the connection attempt was abandoned")
            raise
        return connection

    @property
    def closed(self) -> bool:
        return self._closed_error is not None

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    def has_capacity(self) -> bool:
        """True if a new stream may start here now."""
        if self.closed or self.no_new_streams:
            return False
        limit = self._h2.remote_settings.max_concurrent_streams
        # h2 counts open streams by walking every stream it holds; fewer streams held than the limit need no count.
        return len(self._h2.streams) < limit or self._h2.open_outbound_streams < limit

    def start_stream(self, method: str, path: str, headers: Headers) -> H2Stream:
        """Sends HEADERS for a new stream (no END_STREAM); the caller flushes."""
        stream_id = self._h2.get_next_available_stream_id()
        request_headers = [
            (":method", method),
            (":scheme", self.origin.scheme),
            (":authority", self.origin.authority),
            (":path", path),
        ] + [(name.lower(), value) for name, value in headers if name.lower() != "host"]
        try:
            self._h2.send_headers(stream_id, request_headers, end_stream=False)
        except h2.exceptions.ProtocolError as error:
            raise H2cError(f"cannot send request headers: {error}") from None
        stream = H2Stream(self, stream_id)
        self._streams[stream_id] = stream
        return stream

    def sendable_bytes(self, stream_id: int) -> int:
        window = self._h2.local_flow_control_window(stream_id)
        return min(window, self._h2.max_outbound_frame_size)

    def send_data(self, stream_id: int, data: bytes) -> None:
        try:
            self._h2.send_data(stream_id, data)
        except h2.exceptions.ProtocolError as error:
            raise StreamClosedError(f"stream {stream_id} cannot send data: {error}") from None

    def end_stream(self, stream_id: int) -> None:
        try:
            self._h2.end_stream(stream_id)
        except h2.exceptions.ProtocolError as error:
            raise StreamClosedError(f"stream {stream_id} cannot end: {error}") from None

    def reset_stream(self, stream_id: int, code: h2.errors.ErrorCodes = h2.errors.ErrorCodes.CANCEL) -> None:
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, code)
        self.write_soon()

    def acknowledge(self, stream_id: int, flow_controlled_bytes: int) -> None:
        if self.closed or flow_controlled_bytes == 0:
            return
        self._h2.acknowledge_received_data(flow_controlled_bytes, stream_id)
        self.write_soon()

    @property
    def end_grace_s(self) -> float:
        """How long a stream closed after its request ended waits for its response's end before it is reset."""
        return self._limits.stream_end_grace_ms / 1000

    def raise_if_closed(self) -> None:
        if self._closed_error is not None:
            raise self._closed_error

    async def flush(self) -> None:
        """Writes pending frames and waits for the socket buffer to drain."""
        self.raise_if_closed()
        self._write_pending()
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as error:
            self._fail_all(ConnectionLostError(f"writing to {self.origin} failed: {_describe(error)}"))
            raise self._closed_error_or(error) from None

    def stream_timed_out(self) -> None:
        """A stream got no response headers in time; after `max_stream_timeouts` in a row the connection takes no new streams."""
        self._stream_timeouts_in_a_row += 1
        if self._stream_timeouts_in_a_row >= self._limits.max_stream_timeouts and not self.no_new_streams:
            _log.warning(
                "retiring the connection to %s: %d streams in a row got no response headers; new streams go to a fresh connection",
                self.origin,
                self._stream_timeouts_in_a_row,
            )
            self.no_new_streams = True
            self._on_change()

    def stream_answered(self) -> None:
        self._stream_timeouts_in_a_row = 0

    async def _keepalive(self) -> None:
        """PING every `ping_interval_ms`; no ACK within `ping_timeout_ms` declares the connection dead.

        The PING is written without waiting for the socket to drain: a peer
        that stopped reading is exactly what this must notice.
        """
        limits = self._limits
        sequence = 0
        while not self.closed:
            await asyncio.sleep(limits.ping_interval_ms / 1000)
            if self.closed:
                return
            sequence += 1
            self._ping_acked.clear()
            try:
                self._h2.ping(sequence.to_bytes(8, "big"))
            except h2.exceptions.ProtocolError:
                return  # the connection is closing
            self._write_pending()
            try:
                await asyncio.wait_for(self._ping_acked.wait(), limits.ping_timeout_ms / 1000)
            except TimeoutError:
                reason = f"{self.origin} did not answer a PING within {limits.ping_timeout_ms} ms (ping_timeout_ms): the connection is dead"
                _log.warning("%s", reason)
                self._fail_all(ConnectionLostError(reason), abort=True)
                return

    def stream_released(self, stream: H2Stream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._on_change()

    def close_now(self, why: str) -> None:
        """Sends GOAWAY and closes the socket without waiting."""
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection()
        self._write_pending()
        self._fail_all(ConnectionLostError(f"connection to {self.origin} closed by this client: {why}"))

    async def aclose(self, timeout_ms: int = DEFAULT_CLOSE_TIMEOUT_MS) -> None:
        """Sends GOAWAY, fails remaining streams and closes the socket."""
        self.close_now("the client is closing")
        self._reader_task.cancel()
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), timeout_ms / 1000)
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task

    # Internals.

    def _start_h2(self, max_recv_buffer_bytes: int, max_connection_recv_buffer_bytes: int) -> None:
        self._h2.initiate_connection()
        self._h2.update_settings(
            {
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: max_recv_buffer_bytes,
            }
        )
        extra_window = max_connection_recv_buffer_bytes - _H2_DEFAULT_WINDOW_BYTES
        if extra_window > 0:
            self._h2.increment_flow_control_window(extra_window)
        self._write_pending()

    async def _await_settings(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._settings_received.wait(), timeout_s)
        except TimeoutError:
            reason = f"{self.origin} sent no HTTP/2 SETTINGS within {timeout_s * 1000:.0f} ms"
            self._fail_all(ConnectionLostError(reason, retry_safe=True))
        self.raise_if_closed()

    def _write_pending(self) -> None:
        data = self._h2.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def write_soon(self) -> None:
        """Write the pending frames once the callbacks ready now have run: what several streams queue meanwhile (one attempt's
        END_STREAM or RST_STREAM, the next one's HEADERS and DATA) leaves in one socket write instead of one each. Nothing
        waits for these frames (an end of request, a reset, a window update), so a turn of the event loop later is as good."""
        if not self._write_scheduled:
            self._write_scheduled = True
            self.loop.call_soon(self._write_scheduled_frames)

    def _write_scheduled_frames(self) -> None:
        self._write_scheduled = False
        if not self.closed:
            self._write_pending()

    async def _read_loop(self) -> None:
        try:
            while not self.closed:
                data = await self._reader.read(_SOCKET_READ_BYTES)
                if not data:
                    self._fail_all(ConnectionLostError(f"{self.origin} closed the connection (EOF)"))
                    return
                self._receive(data)
        except OSError as error:
            self._fail_all(ConnectionLostError(f"connection to {self.origin} lost: {_describe(error)}"))

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            _log.error("h2c task for %s failed", self.origin, exc_info=error)
            self._fail_all(ConnectionLostError(f"h2c task for {self.origin} failed: {error!r}"))

    def _receive(self, data: bytes) -> None:
        self._inbound += data
        offset = 0
        while not self.closed and len(self._inbound) - offset >= _FRAME_HEADER_BYTES:
            frame_bytes = _FRAME_HEADER_BYTES + int.from_bytes(self._inbound[offset : offset + 3], "big")
            if len(self._inbound) - offset < frame_bytes:
                break
            self._receive_frame(bytes(self._inbound[offset : offset + frame_bytes]))
            offset += frame_bytes
        del self._inbound[:offset]
        if not self.closed:
            self._write_pending()

    def _receive_frame(self, frame: bytes) -> None:
        try:
            events = self._h2.receive_data(frame)
        except h2.exceptions.ProtocolError as error:
            self._write_pending()
            self._fail_all(ConnectionLostError(f"HTTP/2 protocol error from {self.origin}: {error}"))
            return
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._with_stream(event.stream_id, lambda s: s._on_headers(_text_headers(event.headers)))
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            self._with_stream(event.stream_id, H2Stream._on_end)
        elif isinstance(event, h2.events.TrailersReceived):
            self._with_stream(event.stream_id, lambda s: setattr(s, "trailers", _text_headers(event.headers)))
        elif isinstance(event, h2.events.StreamReset):
            self._on_reset(event)
        elif isinstance(event, h2.events.WindowUpdated):
            self._on_window(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._settings_received.set()
            self._on_window(0)
            self._on_change()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)
        elif isinstance(event, h2.events.PingAckReceived):
            self._ping_acked.set()

    def _with_stream(self, stream_id: int | None, action: collections.abc.Callable[[H2Stream], object]) -> None:
        stream = self._streams.get(stream_id or 0)
        if stream is not None:
            action(stream)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self._streams.get(event.stream_id or 0)
        if stream is None:
            self.acknowledge(event.stream_id or 0, event.flow_controlled_length or 0)
            return
        stream._on_data(event.data or b"", event.flow_controlled_length or 0)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        code = _error_code_name(event.error_code)
        refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
        error = StreamClosedError(f"stream {event.stream_id} reset by {self.origin}: {code}", retry_safe=refused)
        self._with_stream(event.stream_id, lambda s: s._fail(error))

    def _on_window(self, stream_id: int | None) -> None:
        if not stream_id:
            for stream in list(self._streams.values()):
                stream._on_window()
            return
        self._with_stream(stream_id, H2Stream._on_window)

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.no_new_streams = True
        last_stream_id = event.last_stream_id or 0
        code = _error_code_name(event.error_code)
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last_stream_id:
                stream._fail(
                    StreamClosedError(
                        f"stream {stream_id} refused by GOAWAY ({code}, last_stream_id={last_stream_id})"
                        f" from {self.origin}; it was not processed",
                        retry_safe=True,
                    )
                )
        self._fail_all(
            ConnectionLostError(f"{self.origin} sent GOAWAY ({code}, last_stream_id={last_stream_id}); the stream may have been processed")
        )

    def _fail_all(self, error: ConnectionLostError, abort: bool = False) -> None:
        """Fail every stream and close the socket; `abort` drops unsent data at once (a peer that does not read never takes it)."""
        if self._closed_error is None:
            self._closed_error = error
        for stream in list(self._streams.values()):
            stream._fail(error)
        self._streams.clear()
        self._settings_received.set()
        if abort:
            self._writer.transport.abort()
        else:
            self._writer.close()
        self._on_change()

    def _closed_error_or(self, error: BaseException) -> H2cError:
        if self._closed_error is not None:
            return self._closed_error
        return ConnectionLostError(f"connection to {self.origin} failed: {_describe(error)}")


class _Pool:
    """The connections to one origin."""

    def __init__(self, client: H2cClient, origin: _Origin) -> None:
        self._client = client
        self.origin = origin
        self.connections: list[_Connection] = []
        self._connect_task: asyncio.Task[_Connection] | None = None
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def open_stream(self, method: str, path: str, headers: Headers, flush: bool = True) -> H2Stream:
        """A new stream on a connection with a free slot, connecting if needed.

        One connection attempt runs at a time per origin; every caller waiting
        for it fails with its error if it fails. With `flush=False` the HEADERS
        frame waits for the stream's first `send` or `end`, which writes both at once.
        """
        deadline: float | None = None  # set when the first wait begins: a stream that starts at once never reads the clock
        while True:
            self._prune()
            connection = self._pick()
            if connection is not None:
                stream = self._start_on(connection, method, path, headers)
                if stream is not None:
                    if flush:
                        await connection.flush()
                    return stream
            elif self._connect_task is not None:
                await self._await_connect(self._connect_task)
            elif len(self.connections) < self._client.max_connections_per_origin:
                self._connect_task = asyncio.create_task(self._connect(), name=f"h2c-connect {self.origin}")
                self._connect_task.add_done_callback(_retrieve_outcome)
            else:
                now = asyncio.get_running_loop().time()
                if deadline is None:
                    deadline = now + self._client.stream_wait_timeout_ms / 1000
                await self._wait_for_change(deadline - now)

    def _prune(self) -> None:
        closed = False
        for connection in self.connections:
            if connection.no_new_streams and connection.active_streams == 0:
                connection.close_now("it takes no new streams and has none open")
            closed = closed or connection.closed
        if closed:
            self.connections = [c for c in self.connections if not c.closed]

    def _pick(self) -> _Connection | None:
        """The connection with a free slot and the fewest active streams (the first of them on a tie)."""
        picked: _Connection | None = None
        for connection in self.connections:
            if (picked is None or connection.active_streams < picked.active_streams) and connection.has_capacity():
                picked = connection
        return picked

    def _start_on(self, connection: _Connection, method: str, path: str, headers: Headers) -> H2Stream | None:
        try:
            return connection.start_stream(method, path, headers)
        except h2.exceptions.NoAvailableStreamIDError:
            connection.no_new_streams = True
            return None

    async def _connect(self) -> _Connection:
        try:
            connection = await _Connection.connect(
                self.origin, self.notify, self._client.connect_timeout_ms, self._client.connection_limits
            )
            self.connections.append(connection)
            return connection
        finally:
            self._connect_task = None
            self.notify()

    @staticmethod
    async def _await_connect(task: asyncio.Task[_Connection]) -> None:
        try:
            await asyncio.shield(task)
        except ConnectionLostError as error:
            raise ConnectionLostError(error.reason, retry_safe=error.retry_safe) from None

    async def _wait_for_change(self, remaining_s: float) -> None:
        if remaining_s <= 0:
            raise H2cError(
                f"no stream slot to {self.origin} within {self._client.stream_wait_timeout_ms} ms:"
                f" {len(self.connections)} connections all at their concurrent stream limit"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), remaining_s)

    async def aclose(self) -> None:
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, H2cError):
                await self._connect_task
        connections, self.connections = self.connections, []
        await asyncio.gather(*(c.aclose() for c in connections))


class H2cClient:
    """Pools HTTP/2 cleartext connections per origin and opens full-duplex streams on them."""

    def __init__(
        self,
        max_connections_per_origin: int = DEFAULT_MAX_CONNECTIONS_PER_ORIGIN,
        connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS,
        max_recv_buffer_bytes: int = DEFAULT_MAX_RECV_BUFFER_BYTES,
        max_connection_recv_buffer_bytes: int = DEFAULT_MAX_CONNECTION_RECV_BUFFER_BYTES,
        stream_wait_timeout_ms: int = DEFAULT_STREAM_WAIT_TIMEOUT_MS,
        ping_interval_ms: int = DEFAULT_PING_INTERVAL_MS,
        ping_timeout_ms: int = DEFAULT_PING_TIMEOUT_MS,
        max_stream_timeouts_per_connection: int = DEFAULT_MAX_STREAM_TIMEOUTS_PER_CONNECTION,
        stream_end_grace_ms: int = DEFAULT_STREAM_END_GRACE_MS,
        max_closed_streams_per_connection: int = DEFAULT_MAX_CLOSED_STREAMS_PER_CONNECTION,
    ) -> None:
        """Limits:

        - max_connections_per_origin: connections opened to one origin at most.
        - connect_timeout_ms: TCP connect plus the server's first SETTINGS.
        - max_recv_buffer_bytes: per-stream receive window (bytes buffered unread).
        - max_connection_recv_buffer_bytes: receive window of a whole connection.
        - stream_wait_timeout_ms: how long open_stream waits for a free stream slot.
        - ping_interval_ms: how often each connection sends a PING (0: never).
        - ping_timeout_ms: a PING unanswered this long declares the connection dead.
        - max_stream_timeouts_per_connection: streams in a row whose response
          headers timed out before the connection takes no new streams.
        - stream_end_grace_ms: how long a stream closed after its request ended
          waits for its response to end before it is reset (RST_STREAM).
        - max_closed_streams_per_connection: closed streams each connection
          remembers, the oldest forgotten first.
        """
        _require_positive(
            max_connections_per_origin=max_connections_per_origin,
            connect_timeout_ms=connect_timeout_ms,
            stream_wait_timeout_ms=stream_wait_timeout_ms,
            ping_timeout_ms=ping_timeout_ms,
            max_stream_timeouts_per_connection=max_stream_timeouts_per_connection,
            stream_end_grace_ms=stream_end_grace_ms,
            max_closed_streams_per_connection=max_closed_streams_per_connection,
        )
        if ping_interval_ms < 0:
            raise ValueError(f"ping_interval_ms must be >= 0 (0 disables keepalive), got {ping_interval_ms}")
        if not 1 <= max_recv_buffer_bytes <= 2**31 - 1:
            raise ValueError(f"max_recv_buffer_bytes must be 1..2**31-1, got {max_recv_buffer_bytes}")
        if not max_recv_buffer_bytes <= max_connection_recv_buffer_bytes <= 2**31 - 1:
            raise ValueError(
                f"max_connection_recv_buffer_bytes must be >= max_recv_buffer_bytes and <= 2**31-1, got {max_connection_recv_buffer_bytes}"
            )
        self.max_connections_per_origin = max_connections_per_origin
        self.connect_timeout_ms = connect_timeout_ms
        self.max_recv_buffer_bytes = max_recv_buffer_bytes
        self.max_connection_recv_buffer_bytes = max_connection_recv_buffer_bytes
        self.stream_wait_timeout_ms = stream_wait_timeout_ms
        self.connection_limits = _ConnectionLimits(
            max_recv_buffer_bytes,
            max_connection_recv_buffer_bytes,
            ping_interval_ms,
            ping_timeout_ms,
            max_stream_timeouts_per_connection,
            stream_end_grace_ms,
            max_closed_streams_per_connection,
        )
        self._pools: dict[_Origin, _Pool] = {}
        self._closed = False

    async def open_stream(self, origin: str, method: str, path: str, headers: Headers, flush: bool = True) -> H2Stream:
        """Starts a request on a pooled connection; the request body stays open.

        `flush=False` leaves the HEADERS frame to go out with the stream's first `send` or `end` (one write instead of two).

        Raises ConnectionLostError if no connection can be made (retry_safe=True),
        H2cError if no stream slot frees up within stream_wait_timeout_ms.
        """
        if self._closed:
            raise H2cError("the h2c client is closed")
        parsed = _parse_origin(origin)
        pool = self._pools.get(parsed)
        if pool is None:
            pool = self._pools[parsed] = _Pool(self, parsed)
        return await pool.open_stream(method, path, headers, flush)

    async def request(
        self,
        origin: str,
        method: str,
        path: str,
        headers: Headers,
        body: bytes = b"",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
    ) -> tuple[int, Headers, bytes]:
        """Sends a whole request and returns (status, headers, body).

        Raises H2cError if the response body exceeds max_body_bytes or the
        exchange takes longer than timeout_ms.
        """
        stream = await self.open_stream(origin, method, path, headers)
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                return await self._exchange(stream, body, max_body_bytes)
        except TimeoutError:
            raise H2cError(f"{method} {origin}{path} took longer than timeout_ms={timeout_ms}") from None
        finally:
            await stream.aclose()

    async def _exchange(self, stream: H2Stream, body: bytes, max_body_bytes: int) -> tuple[int, Headers, bytes]:
        if body:
            await stream.send(body)
        await stream.end()
        status, headers = await stream.response_headers()
        chunks: list[bytes] = []
        received = 0
        while chunk := await stream.read():
            received += len(chunk)
            if received > max_body_bytes:
                raise H2cError(f"response body exceeds max_body_bytes={max_body_bytes}")
            chunks.append(chunk)
        return status, headers, b"".join(chunks)

    def connection_count(self, origin: str) -> int:
        """Open connections to `origin` that still take new streams."""
        pool = self._pools.get(_parse_origin(origin))
        if pool is None:
            return 0
        return sum(1 for c in pool.connections if not c.closed and not c.no_new_streams)

    async def aclose(self) -> None:
        """Closes every connection; pending operations raise ConnectionLostError."""
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.aclose() for pool in pools))


def _retrieve_outcome(task: asyncio.Task[_Connection]) -> None:
    """Marks a connect task's failure as seen; every waiter already received it."""
    if not task.cancelled():
        task.exception()


def _text_headers(headers: collections.abc.Iterable[tuple[bytes | str, bytes | str]] | None) -> Headers:
    pairs: Headers = []
    for name, value in headers or []:
        pairs.append((_as_text(name), _as_text(value)))
    return pairs


def _as_text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _error_code_name(code: object) -> str:
    return code.name if isinstance(code, h2.errors.ErrorCodes) else str(code)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return str(error) or type(error).__name__


def _require_positive(**limits: int) -> None:
    for name, value in limits.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
