"""Replies from partition leaders to requests waiting at an ingress, and the bus that carries them.

A request that waits (a call, an attach, a send awaiting Accepted, an admin
command) registers with the node's `ReplyBus` and puts an `IngressSink`
(node id, request id) into the record it appends. When applying that record
(or a later one) produces an answer, the partition leader hands a `Reply` to
the bus, which completes the waiting future. Request ids count up from a
random 62-bit start, so a reply meant for a request from before a restart finds nobody.
In a node of several worker processes, worker `i` of `n` gives out only ids
`≡ i (mod n)`, so a reply names the worker it goes to (`worker_of`).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import secrets
from dataclasses import dataclass

import msgpack

from wal.records import IngressSink, Outcome, pack_struct, unpack_struct


class ReplyKind(enum.IntEnum):
    OUTCOME = 1  # the invocation finished: `outcome` is set
    SUBMITTED = 2  # an Invoke was accepted: `previously_accepted` says if it was a duplicate
    NOT_READY = 3  # output requested without blocking, invocation still running
    NOT_FOUND = 4  # no such invocation (or no longer retained)
    ACK = 5  # an admin command or signal was applied
    CONFLICT = 6  # the request conflicts with existing state (e.g. workflow already started); `message` says why
    DONE = 7  # an admin command took its whole effect at once, or there was nothing to do (already paused)
    GONE = 8  # what the command needs is no longer stored (a purged journal); `message` says what
    UNSUPPORTED = 9  # the command does not apply to this kind of invocation (restarting a workflow); `message` says why
    INVALID = 10  # the command's arguments do not fit the invocation (a deployment of another protocol range); `message` says why


@dataclass(frozen=True, slots=True)
class Reply:
    kind: ReplyKind
    invocation_id: str
    outcome: Outcome | None = None
    previously_accepted: bool = False
    message: str = ""
    completion_expires_at_ms: int | None = None
    service: str | None = None  # with OUTCOME: the invocation's service and handler, so an attach by bare id
    handler: str | None = None  # can answer with the handler's output content type
    new_invocation_id: str | None = None  # with ACK to a restart-as-new: the new invocation (since 0.2)


class ReplyBus:
    """In-process delivery of replies to waiting requests of this node.

    `max_waiting_requests` bounds how many requests may wait at once; beyond
    it `register` raises `TooManyWaitingRequests` so the ingress can answer 503/429.
    """

    def __init__(self, node_id: int, max_waiting_requests: int = 100_000, worker: int = 0, workers: int = 1) -> None:
        assert 0 <= worker < workers, f"worker {worker} of {workers}"
        self.node_id = node_id
        self.max_waiting_requests = max_waiting_requests
        self.worker = worker
        self.workers = workers
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._closed_because: str | None = None
        # Sequential from a random start: unique in this process, and replies meant for a previous process find nobody.
        # Ids of worker i of n are i modulo n (with one worker: every id), and stay below 2**62 + n * requests: records
        # carry them as msgpack integers, which end at 2**64 (a start of randbits(62) * n passed that for n >= 5).
        self._request_ids = itertools.count(secrets.randbits(62) // workers * workers + worker, workers)
        self._emptied: asyncio.Event | None = None  # set when the last waiting request releases, while someone waits for that
        self._loop: asyncio.AbstractEventLoop | None = None  # looked up once: each lookup is a getpid system call (CPython 3.11)

    def register(self) -> tuple[IngressSink, asyncio.Future[Reply]]:
        """Reserve a request id; the future completes with its reply. Call `release` when done.

        Raises NodeStopping once the bus is closed, TooManyWaitingRequests when full.
        """
        if self._closed_because is not None:
            raise NodeStopping(self._closed_because)
        if len(self._waiting) >= self.max_waiting_requests:
            raise TooManyWaitingRequests(f"{len(self._waiting)} requests already wait for replies (max_waiting_requests)")
        request_id = next(self._request_ids)
        assert request_id not in self._waiting, "request ids are unique within a process"
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._waiting[request_id] = future
        return IngressSink(self.node_id, request_id), future

    def release(self, sink: IngressSink) -> None:
        self._waiting.pop(sink.request_id, None)
        if self._emptied is not None and not self._waiting:
            self._emptied.set()

    async def wait_until_none_waiting(self) -> None:
        """Return once no request waits (each waiting request releases its sink when it answers or gives up)."""
        while self._waiting:
            self._emptied = asyncio.Event()
            await self._emptied.wait()

    def worker_of(self, sink: IngressSink) -> int:
        """The worker of this node a sink of this node belongs to."""
        return sink.request_id % self.workers

    def deliver(self, sink: IngressSink, reply: Reply) -> bool:
        """Complete the request `sink` names; False if nobody waits for it (gone, or another node's)."""
        if sink.node_id != self.node_id:
            return False
        future = self._waiting.pop(sink.request_id, None)
        if future is None or future.done():
            return False
        future.set_result(reply)
        return True

    def close(self, reason: str) -> None:
        """No reply will come any more (the node stops): every waiting request fails with NodeStopping, and so do new ones."""
        self._closed_because = reason
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(NodeStopping(reason))
        if self._emptied is not None:
            self._emptied.set()

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)


class NodeStopping(Exception):
    """The node stops before the reply came; the message says why."""


class TooManyWaitingRequests(Exception):
    """More requests wait for replies than `max_waiting_requests` allows."""


def encode_reply(sink: IngressSink, reply: Reply) -> bytes:
    """A reply for a request waiting at another node, as sent to that node's `/internal/replies`."""
    return msgpack.packb([pack_struct(sink), pack_struct(reply)], use_bin_type=True)


def decode_reply(data: bytes) -> tuple[IngressSink, Reply]:
    """Inverse of `encode_reply`; raises ValueError naming what is wrong."""
    try:
        sink_raw, reply_raw = msgpack.unpackb(data, raw=False)
        return unpack_struct(IngressSink, sink_raw), unpack_struct(Reply, reply_raw, {"kind": ReplyKind})
    except Exception as exc:
        raise ValueError(f"not an encoded reply: {exc}") from exc
