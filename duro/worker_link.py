"""Links between the worker processes of one node: a small request/response protocol over local (abstract Unix) sockets.

A node with several workers splits its partitions between them; a worker
reaches the others through one `LinkClient` per sibling and answers them with
its `LinkServer`. What travels is what the other worker cannot do itself:

- APPEND (partition, entries): an append to a partition the sibling owns, into
  its own log; answered with the last offset once durable, or the log's error;
- REPLY (an encoded reply): the answer for a request waiting at the sibling's
  ingress (`wal.replies.encode_reply`), one-way;
- QUERY (table names, timeout): the sibling's partition tables for `POST /query`
  (msgpack of Arrow IPC, `duro.cluster_query.encode_tables`);
- METRICS: the sibling's Prometheus text, for the node's `/metrics`.

Frames are a 4-byte big-endian length and a msgpack list `[kind, id, ...]`,
bounded by `max_frame_bytes` (a worker whose answer would be larger answers
with an error instead, so that request fails alone). The frames an end writes
in one turn of its event loop go out in one write at the end of the turn
(`FrameWriter`), and one read takes all that arrived; a link whose written
bytes the other worker does not take (it is stopped, or stuck) is dropped once
more than `max_buffered_bytes` wait unsent. A request waits at most `timeout_ms` for its
answer; at most `max_pending_requests` wait per link (further ones wait for
room). A link that breaks fails every request waiting on it with LinkLost (an
append in flight may or may not have been written, as with any log error); the
next request connects again, and a sibling that does not accept (it is
restarting) fails at once with LinkUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import msgpack

from wal.log import (
    AppendNotSentError,
    AppendOutcomeUnknownError,
    AppendTooLargeError,
    LogClosedError,
    LogError,
    LogFullError,
    LogTrimmedError,
)

log = logging.getLogger("duro.worker_link")

_LENGTH = struct.Struct(">I")

APPEND, REPLY, QUERY, METRICS, ANSWER, FAILURE = 1, 2, 3, 4, 5, 6

_ERRORS: dict[str, type[LogError]] = {
    cls.__name__: cls
    for cls in (LogError, LogClosedError, LogFullError, AppendTooLargeError, AppendOutcomeUnknownError, AppendNotSentError, LogTrimmedError)
}


def error_name(error: Exception) -> str:
    """The name a log error crosses the link as: its nearest class the other side knows (a subclass of its own is not), else RemoteError."""
    return next((cls.__name__ for cls in type(error).__mro__ if cls.__name__ in _ERRORS), "RemoteError")


class LinkError(LogError):
    """A request to a sibling worker did not get its answer; the message says why and whether a retry is safe."""


class LinkUnavailable(LinkError, AppendNotSentError):
    """The sibling worker does not accept connections (it is restarting); nothing was sent, a retry is safe."""


class LinkLost(LinkError, AppendOutcomeUnknownError):
    """The link broke or the answer did not come in time; a request in flight may or may not have taken effect."""


class RemoteError(LinkError):
    """The sibling answered with an error other than its log's (a failed query, say)."""


def socket_name(node_token: str, worker: int) -> str:
    """The abstract Unix socket of worker `worker` of the node run `node_token` (no file: it goes away with the process)."""
    return f"\0duro-{node_token}-worker-{worker}"


@dataclass(frozen=True, slots=True)
class LinkLimits:
    timeout_ms: int
    max_pending_requests: int
    max_frame_bytes: int
    max_buffered_bytes: int = 64 * 1024 * 1024  # written but not yet taken by the other worker; over it the link is dropped

    def over_buffer(self, transport: asyncio.WriteTransport, queued_bytes: int = 0) -> str | None:
        """Why a link whose unsent bytes (the transport's and `queued_bytes` not yet written) passed the bound must be dropped (the other worker is not reading), else None."""
        buffered = transport.get_write_buffer_size() + queued_bytes
        if buffered <= max(self.max_buffered_bytes, self.max_frame_bytes):
            return None
        return f"{buffered} bytes wait unsent, over worker.max_link_buffered_bytes={self.max_buffered_bytes} (it is not reading)"


@dataclass(frozen=True, slots=True)
class LinkHandlers:
    """What a worker does for its siblings' requests."""

    append: Callable[[int, list[bytes]], Awaitable[int]]
    reply: Callable[[bytes], None]
    query: Callable[[list[str], int], Awaitable[bytes]]
    metrics: Callable[[], Awaitable[bytes]]


class FrameReader:
    """Splits a byte stream into msgpack frames, refusing any over `max_frame_bytes`."""

    def __init__(self, max_frame_bytes: int) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[list[Any]]:
        self._buffer += data
        frames = []
        offset = 0
        while len(self._buffer) - offset >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer, offset)
            if length > self._max:
                raise ValueError(f"a worker link frame of {length} bytes is over max_frame_bytes={self._max}")
            end = offset + _LENGTH.size + length
            if len(self._buffer) < end:
                break
            frames.append(msgpack.unpackb(self._buffer[offset + _LENGTH.size : end], raw=False))
            offset = end
        del self._buffer[:offset]
        return frames


def link_frame(message: list[Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return _LENGTH.pack(len(body)) + body


class FrameWriter:
    """The frames one end of a link writes in one turn of the event loop, sent in one write at the end of that turn.

    A group commit makes many appends durable at once and an applied batch
    answers many requests at once: their answers and replies leave in one
    `write` (one system call, one wake-up of the other worker) instead of one
    each. Queued and unsent bytes together stay under the link's
    `max_buffered_bytes`; past it `overflowed(why)` drops the link.
    """

    def __init__(self, transport: asyncio.Transport, limits: LinkLimits, overflowed: Callable[[str], None]) -> None:
        self._transport = transport
        self._limits = limits
        self._overflowed = overflowed
        self._frames: list[bytes] = []
        self._queued_bytes = 0
        self._loop = asyncio.get_running_loop()

    def write(self, frame: bytes) -> None:
        if not self._frames:
            self._loop.call_soon(self.flush)
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        if (why := self._limits.over_buffer(self._transport, self._queued_bytes)) is not None:
            self._frames, self._queued_bytes = [], 0
            self._overflowed(why)

    def flush(self) -> None:
        """Write what is queued now (at the end of the turn, or before the link closes on purpose)."""
        frames, self._frames, self._queued_bytes = self._frames, [], 0
        if frames and not self._transport.is_closing():
            self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


class _ServerProtocol(asyncio.Protocol):
    """One sibling's connection to this worker: runs its requests, writes their answers."""

    def __init__(
        self, handlers: LinkHandlers, limits: LinkLimits, tasks: set[asyncio.Task[None]], connections: set[_ServerProtocol]
    ) -> None:
        self._handlers = handlers
        self._limits = limits
        self._max_frame_bytes = limits.max_frame_bytes
        self._reader = FrameReader(limits.max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self._writer: FrameWriter | None = None
        self._tasks = tasks
        self._connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream socket's (uvloop's transports are not asyncio's classes)
        self._writer = FrameWriter(self._transport, self._limits, self._overflowed)
        self._connections.add(self)

    def _overflowed(self, why: str) -> None:
        log.error("dropping a worker link: %s", why)
        if self._transport is not None:
            self._transport.abort()  # the asker's requests on it fail with LinkLost

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except ValueError as error:
            log.error("closing a worker link: %s", error)
            assert self._transport is not None, "connected"
            self._transport.close()
            return
        for message in frames:
            kind = message[0]
            if kind == REPLY:
                self._handlers.reply(message[2])
                continue
            task = asyncio.ensure_future(self._answer(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: list[Any]) -> None:
        kind, request_id = message[0], message[1]
        try:
            if kind == APPEND:
                result: Any = await self._handlers.append(message[2], message[3])
            elif kind == QUERY:
                result = await self._handlers.query(message[2], message[3])
            elif kind == METRICS:
                result = await self._handlers.metrics()
            else:
                raise ValueError(f"unknown worker link request kind {kind}")
            answer = [ANSWER, request_id, result]
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the asking worker gets it back, as the error its own log would have raised
            name = error_name(error)
            answer = [FAILURE, request_id, name, str(error)]
        frame = link_frame(answer)
        if len(frame) - _LENGTH.size > self._max_frame_bytes:  # the asker would refuse it and drop the link with every request on it
            frame = link_frame(
                [
                    FAILURE,
                    request_id,
                    "RemoteError",
                    f"its answer is {len(frame) - _LENGTH.size} bytes, over the link's max_frame_bytes={self._max_frame_bytes}"
                    " (for a query: select fewer rows or columns, or raise ingress.max_internal_body_bytes)",
                ]
            )
        if self._transport is not None and self._writer is not None and not self._transport.is_closing():
            self._writer.write(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._writer = None
        self._connections.discard(self)


class LinkServer:
    """This worker's end: accepts its siblings' connections on its abstract socket."""

    def __init__(self, name: str, handlers: LinkHandlers, limits: LinkLimits) -> None:
        self._name = name
        self._handlers = handlers
        self._limits = limits
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_ServerProtocol] = set()

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self._name)
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: _ServerProtocol(self._handlers, self._limits, self._tasks, self._connections), sock=sock
        )

    async def close(self) -> None:
        """Stop accepting, drop every sibling's connection (their requests in flight fail with LinkLost) and end the running ones."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: LinkClient, max_frame_bytes: int) -> None:
        self._client = client
        self._reader = FrameReader(max_frame_bytes)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except ValueError as error:
            self._client.lost(self, f"a bad frame from worker {self._client.worker}: {error}")
            return
        for message in frames:
            self._client.answered(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.lost(self, f"the link to worker {self._client.worker} closed ({exc or 'EOF'})")


class LinkClient:
    """This worker's requests to one sibling (`worker`), over one connection made when first needed."""

    def __init__(self, worker: int, name: str, limits: LinkLimits) -> None:
        self.worker = worker
        self._name = name
        self._limits = limits
        self._protocol: _ClientProtocol | None = None
        self._transport: asyncio.Transport | None = None
        self._writer: FrameWriter | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._slots = asyncio.Semaphore(limits.max_pending_requests)
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def append(self, partition: int, entries: list[bytes]) -> int:
        result: int = await self._request([APPEND, 0, partition, entries])
        return result

    async def query(self, names: list[str], timeout_ms: int) -> bytes:
        result: bytes = await self._request([QUERY, 0, names, timeout_ms])
        return result

    async def metrics(self) -> bytes:
        result: bytes = await self._request([METRICS, 0])
        return result

    def reply_nowait(self, encoded: bytes) -> bool:
        """Send a reply one-way if the link is up; False if it is not (then `reply` connects first)."""
        if not self.connected:
            return False
        self._write(link_frame([REPLY, 0, encoded]))
        return True

    async def reply(self, encoded: bytes) -> None:
        """Send a reply one-way, connecting first (a reply that cannot be sent is lost: the waiting request re-asks its partition)."""
        await self._connect()
        self.reply_nowait(encoded)

    async def _request(self, message: list[Any]) -> Any:
        async with self._slots:
            await self._connect()
            request_id = next(self._ids)
            message[1] = request_id
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = future
            try:
                self._write(link_frame(message))
                async with asyncio.timeout(self._limits.timeout_ms / 1000):
                    return await future
            except TimeoutError:
                raise LinkLost(
                    f"worker {self.worker} of this node did not answer within worker.link_timeout_ms={self._limits.timeout_ms};"
                    " the request may or may not have taken effect"
                ) from None
            finally:
                self._waiting.pop(request_id, None)

    def _write(self, frame: bytes) -> None:
        """Queue a frame on the open link, written at the end of this turn; past `max_buffered_bytes` unsent the link is dropped and what waits on it fails (LinkLost)."""
        assert self._writer is not None, "connected"
        self._writer.write(frame)

    def _overflowed(self, protocol: _ClientProtocol, transport: asyncio.Transport, why: str) -> None:
        transport.abort()
        self.lost(protocol, f"dropped the link to worker {self.worker}: {why}")

    async def _connect(self) -> None:
        if self.connected:
            return
        if self._closed:
            raise LogClosedError(f"the link to worker {self.worker} is closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self._limits.timeout_ms / 1000):
                await loop.sock_connect(sock, self._name)  # connected here: uvloop's own connect cannot name an abstract socket
                transport, protocol = await loop.create_unix_connection(
                    lambda: _ClientProtocol(self, self._limits.max_frame_bytes), sock=sock
                )
        except (OSError, TimeoutError) as error:
            sock.close()
            raise LinkUnavailable(
                f"worker {self.worker} of this node does not accept connections ({error.__class__.__name__}: it is starting or"
                " restarting); nothing was sent, retrying is safe"
            ) from None
        self._transport, self._protocol = transport, protocol
        self._writer = FrameWriter(transport, self._limits, lambda why: self._overflowed(protocol, transport, why))

    def answered(self, message: list[Any]) -> None:
        future = self._waiting.get(message[1])
        if future is None or future.done():
            return
        if message[0] == ANSWER:
            future.set_result(message[2])
        else:
            error_class = _ERRORS.get(message[2], RemoteError)
            future.set_exception(error_class(f"worker {self.worker}: {message[3]}"))

    def lost(self, protocol: _ClientProtocol, why: str) -> None:
        if protocol is not self._protocol:
            return
        if self._transport is not None:
            self._transport.close()
        self._transport = self._protocol = self._writer = None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(LinkLost(f"{why}; a request in flight may or may not have taken effect"))
        log.info("%s", why)

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._transport is not None and self._protocol is not None:
            if self._writer is not None:
                self._writer.flush()  # what was written before closing still goes (replies, say)
            self.lost(self._protocol, f"the link to worker {self.worker} was closed")
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
