"""What the workers of one node share besides the log: the deployment registry and the subscriptions, kept by the node's supervisor.

The supervisor (`duro.supervisor`) holds them in the same files a one-process
node uses (`registry.json`, `subscriptions.json` in the data dir, so a data dir
reads the same either way) and talks to each worker over the socket pair it
started the worker with. `MetadataService` is its end; `WorkerMetadata` is a
worker's, a `KeyValueStore` like the Kafka metadata topic (`values`, `put`,
`watch`), so the registry (`SharedRegistryStore`) and the subscriptions use it
as they use the topic on Kafka.

A worker's `put` returns once the supervisor wrote the file and every running
worker, the asking one included, applied the change (each is bounded by
`timeout_ms`; a worker that is not running reads the files when it starts; a
worker whose `put` gave up waiting still gets the change): a deployment
registered through one worker is known to all of them when the admin API
answers. Messages
are `duro.worker_link` frames: VALUES (all values, to a worker that connects),
PUT (key, value or None) answered by DONE, CHANGED (key, value) answered by
APPLIED, PROGRESS (a starting worker's progress, as text: the supervisor's
stall bound restarts when it changes) and READY (a worker serves).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from duro.worker_link import FrameReader, link_frame
from ingress.registry import FileRegistryStore, SharedRegistryStore
from ingress.subscriptions import FileKeyValues

log = logging.getLogger("duro.worker_metadata")

VALUES, PUT, DONE, CHANGED, APPLIED, READY, PROGRESS = 1, 2, 3, 4, 5, 6, 7
READY_WORKERS_KEY = "workers/ready"
"""The workers that serve now (a JSON list of indexes), set by the supervisor and never stored: readiness of the whole node."""
MAX_CONTROL_FRAME_BYTES = 64 * 1024 * 1024  # a registry document with many deployments fits many times over


class _Channel(asyncio.Protocol):
    """One end of a control socket pair: frames in, frames out; `on_frame` handles each, `on_lost` the end."""

    def __init__(self, on_frame: Callable[[list[Any]], None], on_lost: Callable[[], None]) -> None:
        self._reader = FrameReader(MAX_CONTROL_FRAME_BYTES)
        self._on_frame = on_frame
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream socket's (uvloop's transports are not asyncio's classes)

    def data_received(self, data: bytes) -> None:
        for message in self._reader.feed(data):
            self._on_frame(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._on_lost()

    def send(self, message: list[Any]) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(link_frame(message))
        return True


async def open_channel(sock: socket.socket, channel: _Channel) -> None:
    """Run `channel` on `sock` (made first, so that its owner holds it before the first frame arrives)."""
    sock.setblocking(False)
    await asyncio.get_running_loop().connect_accepted_socket(lambda: channel, sock)


class MetadataService:
    """The supervisor's end: the shared values, their files, and every worker's channel."""

    def __init__(self, data_dir: Any, timeout_ms: int) -> None:
        self._registry_file = FileRegistryStore(data_dir)
        self._subscriptions = FileKeyValues(data_dir)
        self._timeout_s = timeout_ms / 1000
        self.values: dict[str, bytes] = {}
        self._channels: dict[int, _Channel] = {}
        self._applied: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._change_ids = itertools.count(1)
        self._lock = asyncio.Lock()  # one change at a time, in the order the puts came
        self.on_ready: Callable[[int], None] = lambda worker: None
        self.on_progress: Callable[[int, str], None] = lambda worker, progress: None

    async def load(self) -> None:
        await self._subscriptions.load()
        self.values = dict(self._subscriptions.values)
        document = await self._registry_file.load()
        if document is not None:
            self.values[SharedRegistryStore.KEY] = document

    async def attach(self, worker: int, sock: socket.socket) -> None:
        """A (re)started worker's control socket: it gets every value at once."""
        channel = _Channel(lambda message: self._received(worker, message), lambda: self._lost(worker, channel))
        self._channels[worker] = channel
        await open_channel(sock, channel)
        channel.send([VALUES, 0, self.values])

    def _received(self, worker: int, message: list[Any]) -> None:
        kind = message[0]
        if kind == PUT:
            task = asyncio.ensure_future(self._put(worker, message[1], message[2], message[3]))
            task.add_done_callback(_log_failure)
        elif kind == APPLIED:
            future = self._applied.get((worker, message[1]))
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == READY:
            self.on_ready(worker)
        elif kind == PROGRESS:
            self.on_progress(worker, message[2])

    def workers_ready(self, ready: set[int]) -> None:
        """Tell every worker which workers serve now (each answers readiness for the whole node from it)."""
        value = json.dumps(sorted(ready)).encode()
        self.values[READY_WORKERS_KEY] = value
        task = asyncio.ensure_future(self._broadcast(READY_WORKERS_KEY, value))
        task.add_done_callback(_log_failure)

    def _lost(self, worker: int, channel: _Channel) -> None:
        if self._channels.get(worker) is not channel:
            return  # the channel of a worker that died and has been started again since: its new channel stays
        del self._channels[worker]
        for (waiting_worker, _), future in list(self._applied.items()):
            if waiting_worker == worker and not future.done():
                future.set_result(None)  # it reads the files when it starts again

    async def _put(self, worker: int, request_id: int, key: str, value: bytes | None) -> None:
        async with self._lock:
            try:
                if key == SharedRegistryStore.KEY:
                    assert value is not None, "the registry document is replaced, never deleted"
                    await self._registry_file.save(value)
                else:
                    await self._subscriptions.put(key, value)
            except OSError as error:
                self._send(worker, [DONE, request_id, f"the node could not store {key!r}: {error}"])
                return
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value
            await self._broadcast(key, value)
        self._send(worker, [DONE, request_id, None])

    async def _broadcast(self, key: str, value: bytes | None) -> None:
        """Send a change to every running worker, the one that asked for it too (so a worker whose `put` gave up waiting
        still applies it), and wait until each applied it (each at most `timeout_ms`)."""
        change_id = next(self._change_ids)
        waiting = []
        for worker, channel in list(self._channels.items()):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._applied[(worker, change_id)] = future
            if channel.send([CHANGED, change_id, key, value]):
                waiting.append((worker, future))
            else:
                future.set_result(None)
        try:
            for worker, future in waiting:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await future
                except TimeoutError:
                    log.warning("worker %d did not apply a change of %r within %.0f ms", worker, key, self._timeout_s * 1000)
        finally:
            for worker, _ in waiting:
                self._applied.pop((worker, change_id), None)

    def _send(self, worker: int, message: list[Any]) -> None:
        channel = self._channels.get(worker)
        if channel is not None:
            channel.send(message)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a metadata change failed", exc_info=task.exception())


class WorkerMetadata:
    """A worker's end: a `KeyValueStore` of the node's shared values, and the PROGRESS and READY reports. `open` waits for the values."""

    def __init__(self, sock: socket.socket, timeout_ms: int) -> None:
        self._sock = sock
        self._timeout_s = timeout_ms / 1000
        self.values: dict[str, bytes] = {}
        self._watchers: list[Callable[[str, bytes | None], None]] = []
        self._channel: _Channel | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._waiting: dict[int, asyncio.Future[str | None]] = {}
        self._ids = itertools.count(1)
        self.supervisor_gone: asyncio.Event = asyncio.Event()

    async def open(self) -> None:
        self._loaded = asyncio.get_running_loop().create_future()
        self._channel = _Channel(self._received, self._lost)
        await open_channel(self._sock, self._channel)
        async with asyncio.timeout(self._timeout_s):
            await self._loaded

    def ready(self) -> None:
        assert self._channel is not None, "open() first"
        self._channel.send([READY, 0])

    def progress(self, text: str) -> None:
        """Tell the supervisor how far this starting worker got (a new text restarts its stall bound)."""
        assert self._channel is not None, "open() first"
        self._channel.send([PROGRESS, 0, text])

    async def put(self, key: str, value: bytes | None) -> None:
        """Store a value node-wide; returns once every running worker applied it. OSError if the supervisor could not store it or did not confirm it in time."""
        assert self._channel is not None, "open() first"
        request_id = next(self._ids)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            if not self._channel.send([PUT, request_id, key, value]):
                raise OSError(f"the node's supervisor is gone; {key!r} was not stored")
            async with asyncio.timeout(self._timeout_s * 2):
                problem = await future
        except TimeoutError:
            raise OSError(
                f"the node's supervisor did not confirm storing {key!r} within twice worker.control_timeout_ms"
                f" ({self._timeout_s * 2000:.0f} ms); it may still be stored, and this worker applies it when it is"
            ) from None
        finally:
            self._waiting.pop(request_id, None)
        if problem is not None:
            raise OSError(problem)  # else the change is applied here already: its CHANGED came before its DONE, on the same socket

    def watch(self, watcher: Callable[[str, bytes | None], None]) -> None:
        self._watchers.append(watcher)

    def _received(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == VALUES:
            self.values = dict(message[2])
            if self._loaded is not None and not self._loaded.done():
                self._loaded.set_result(None)
        elif kind == CHANGED:
            self._apply(message[2], message[3])
            assert self._channel is not None, "received on an open channel"
            self._channel.send([APPLIED, message[1]])
        elif kind == DONE:
            future = self._waiting.get(message[1])
            if future is not None and not future.done():
                future.set_result(message[2])

    def ready_workers(self) -> set[int]:
        """The workers of the node that serve now, as the supervisor last said."""
        raw = self.values.get(READY_WORKERS_KEY)
        return set(json.loads(raw)) if raw else set()

    def _apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value
        for watcher in list(self._watchers):
            watcher(key, value)

    def _lost(self) -> None:
        self.supervisor_gone.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_result("the node's supervisor is gone")
