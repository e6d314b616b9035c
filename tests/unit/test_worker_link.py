"""Links between the worker processes of one node, two workers in one event loop: appends reach the owner's log, errors come back typed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import REGISTRY

from duro.metrics import WORKER_LINK_APPENDS_TOTAL
from duro.settings import DuroSettings
from duro.supervisor import WorkerRole
from duro.worker_link import (
    METRICS,
    FrameReader,
    FrameWriter,
    LinkClient,
    LinkHandlers,
    LinkLimits,
    LinkLost,
    LinkServer,
    LinkUnavailable,
    RemoteError,
    error_name,
    link_frame,
    socket_name,
)
from duro.worker_log import WorkerLog, owner_of
from duro.worker_metadata import WorkerMetadata
from duro.worker_parts import WorkerParts
from wal.log import AppendNotSentError, AppendOutcomeUnknownError, LogError, LogFullError
from wal.memory import MemoryLog

LIMITS = LinkLimits(timeout_ms=5_000, max_pending_requests=16, max_frame_bytes=1 << 20)
LINKS_MANY = LinkLimits(timeout_ms=5_000, max_pending_requests=256, max_frame_bytes=1 << 20)


def test_frames_split_across_reads_and_an_oversized_one_is_refused() -> None:
    reader = FrameReader(max_frame_bytes=64)
    frame = link_frame([1, 7, 3, [b"a", b"b"]]) + link_frame([2, 0, b"r"])
    assert reader.feed(frame[:5]) == []
    assert reader.feed(frame[5:]) == [[1, 7, 3, [b"a", b"b"]], [2, 0, b"r"]]
    with pytest.raises(ValueError, match="max_frame_bytes=64"):
        reader.feed(link_frame([1, 1, b"x" * 100]))


class _RecordingTransport:
    """What a `FrameWriter` writes, one entry per `write` call (a transport that takes everything at once)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


async def test_frames_written_in_one_turn_leave_in_one_write_in_order_and_past_the_bound_the_link_is_dropped() -> None:
    transport = _RecordingTransport()
    overflows: list[str] = []
    limits = LinkLimits(timeout_ms=1_000, max_pending_requests=4, max_frame_bytes=1_024, max_buffered_bytes=4_096)
    writer = FrameWriter(cast(asyncio.Transport, transport), limits, overflows.append)
    frames = [link_frame([2, 0, b"reply %d" % n]) for n in range(100)]
    for frame in frames:
        writer.write(frame)
    assert transport.writes == []  # nothing before the turn ends
    await asyncio.sleep(0)
    assert transport.writes == [b"".join(frames)]
    assert FrameReader(1_024).feed(transport.writes[0]) == [[2, 0, b"reply %d" % n] for n in range(100)]
    writer.write(frames[0])
    await asyncio.sleep(0)
    assert transport.writes[1:] == [frames[0]]  # a lone frame as it is
    big = link_frame([2, 0, b"b" * 1_000])
    for _ in range(4):
        writer.write(big)
    assert overflows == [] and transport.writes[2:] == []
    writer.write(big)  # 5 frames of 1,010 bytes queued in one turn: over max_buffered_bytes=4096
    assert len(overflows) == 1 and "5050 bytes wait unsent, over worker.max_link_buffered_bytes=4096" in overflows[0]
    await asyncio.sleep(0)
    assert transport.writes[2:] == []  # what was queued past the bound is not written
    transport.closing = True
    writer.write(frames[1])
    await asyncio.sleep(0)
    assert transport.writes[2:] == []  # nor anything on a closing link


async def test_many_appends_and_replies_in_one_turn_all_arrive_in_order_with_their_answers_matched() -> None:
    token = secrets.token_hex(4)
    owner_log = MemoryLog(4)
    replies: list[bytes] = []
    all_replied = asyncio.Event()

    async def append(partition: int, entries: list[bytes]) -> int:
        return await owner_log.append(partition, entries)

    async def unused(*_: object) -> bytes:
        raise AssertionError("not asked")

    def reply(encoded: bytes) -> None:
        replies.append(encoded)
        if len(replies) == 300:
            all_replied.set()

    server = LinkServer(socket_name(token, 1), LinkHandlers(append, reply, unused, unused), LIMITS)
    await server.start()
    link = LinkClient(1, socket_name(token, 1), LINKS_MANY)
    try:
        offsets = await asyncio.gather(*(link.append(n % 4, [b"entry %d" % n]) for n in range(200)))
        assert offsets == [n // 4 for n in range(200)]  # each answer went to its own request
        for partition in range(4):
            tail = owner_log.tail(partition, 0, max_batch_entries=100)
            entries = [entry for _, entry in await anext(tail)]
            await tail.aclose()
            assert entries == [b"entry %d" % n for n in range(partition, 200, 4)]
        for n in range(300):
            assert link.reply_nowait(b"reply %d" % n)
        await asyncio.wait_for(all_replied.wait(), 10)
        assert replies == [b"reply %d" % n for n in range(300)]
    finally:
        await link.close()
        await server.close()


async def test_an_append_to_another_workers_partition_lands_in_its_log_and_its_errors_come_back() -> None:
    token = secrets.token_hex(4)
    owner_log = MemoryLog(4)
    full_partitions: set[int] = set()
    replies: list[bytes] = []

    async def append(partition: int, entries: list[bytes]) -> int:
        if partition in full_partitions:
            raise LogFullError("disk full")
        return await owner_log.append(partition, entries)

    async def query(names: list[str], timeout_ms: int) -> bytes:
        raise RuntimeError("no tables here")

    async def metrics() -> bytes:
        return b"m 1.0\n"

    replied = asyncio.Event()

    def reply(encoded: bytes) -> None:
        replies.append(encoded)
        replied.set()

    server = LinkServer(socket_name(token, 1), LinkHandlers(append, reply, query, metrics), LIMITS)
    await server.start()
    link = LinkClient(1, socket_name(token, 1), LIMITS)
    wal = WorkerLog(MemoryLog(4), 0, 2, {1: link})
    try:
        assert owner_of(3, 2) == 1 and not wal.owns(3) and wal.owned_partitions() == {0, 2}
        crossed_before = _link_appends(owner=1)
        assert await wal.append(3, [b"one", b"two"]) == 1
        assert await owner_log.end_offset(3) == 2
        assert _link_appends(owner=1) == crossed_before + 1, "an append to worker 1's partition crosses, and is counted"
        assert await wal.append(2, [b"own"]) == 0 and await owner_log.end_offset(2) == 0  # its own partition stays local
        assert _link_appends(owner=1) == crossed_before + 1, "an append to its own partition is not"
        full_partitions.add(1)
        with pytest.raises(LogFullError, match="worker 1: disk full"):
            await wal.append(1, [b"x"])
        assert await link.metrics() == b"m 1.0\n"
        with pytest.raises(Exception, match="no tables here"):
            await link.query(["sys_invocation"], 1_000)
        assert link.reply_nowait(b"encoded reply")
        await asyncio.wait_for(replied.wait(), 10)
        assert replies == [b"encoded reply"]
    finally:
        await link.close()
        await server.close()


async def test_a_sibling_that_is_down_fails_at_once_and_one_that_dies_mid_request_leaves_the_outcome_unknown() -> None:
    token = secrets.token_hex(4)
    link = LinkClient(1, socket_name(token, 1), LIMITS)
    with pytest.raises(LinkUnavailable, match="nothing was sent"):
        await link.append(0, [b"x"])
    started = asyncio.Event()

    async def stuck(partition: int, entries: list[bytes]) -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    async def nothing(*_: object) -> bytes:
        return b""

    server = LinkServer(socket_name(token, 1), LinkHandlers(stuck, lambda _: None, nothing, nothing), LIMITS)
    await server.start()
    request = asyncio.ensure_future(link.append(1, [b"y"]))
    await started.wait()
    await server.close()  # the sibling goes away with the append in flight, its connections with it
    with pytest.raises(LinkLost) as lost:
        await request
    assert isinstance(lost.value, AppendOutcomeUnknownError)
    await link.close()


async def test_an_answer_over_the_frame_limit_fails_its_request_alone_and_the_link_stays_up() -> None:
    token = secrets.token_hex(4)
    owner_log = MemoryLog(2)

    async def append(partition: int, entries: list[bytes]) -> int:
        return await owner_log.append(partition, entries)

    async def big_query(names: list[str], timeout_ms: int) -> bytes:
        return b"r" * (LIMITS.max_frame_bytes + 1)

    async def metrics() -> bytes:
        return b""

    server = LinkServer(socket_name(token, 1), LinkHandlers(append, lambda _: None, big_query, metrics), LIMITS)
    await server.start()
    link = LinkClient(1, socket_name(token, 1), LIMITS)
    try:
        assert await link.append(1, [b"before"]) == 0
        with pytest.raises(RemoteError, match=rf"bytes, over the link's max_frame_bytes={LIMITS.max_frame_bytes}"):
            await link.query(["sys_journal"], 1_000)
        assert link.connected, "the link that carried the refused answer is still up"
        assert await link.append(1, [b"after"]) == 1
    finally:
        await link.close()
        await server.close()


async def test_the_nodes_metrics_leave_out_a_worker_that_does_not_answer_in_time(tmp_path: Path) -> None:
    """`/metrics` of a node waits `worker.metrics_timeout_ms` for each sibling: a stuck one is left out, the scrape still answers."""
    token = secrets.token_hex(4)

    async def unused(*_: object) -> int:
        raise AssertionError("not asked")

    async def answers() -> bytes:
        return b"# HELP duro_answering_sample A sample.\n# TYPE duro_answering_sample gauge\nduro_answering_sample 7.0\n"

    async def stuck() -> bytes:
        await asyncio.Event().wait()
        return b""

    servers = [
        LinkServer(socket_name(token, index), LinkHandlers(unused, lambda _: None, unused, handler), LIMITS)
        for index, handler in ((1, answers), (2, stuck))
    ]
    for server in servers:
        await server.start()
    settings = DuroSettings(data_dir=tmp_path, worker={"metrics_timeout_ms": 300})
    parts = WorkerParts(WorkerRole(0, 3, token, -1, -1), settings, cast(WorkerMetadata, None))
    try:
        started = time.monotonic()
        text, _ = await asyncio.wait_for(parts.metrics(), 10)
        assert time.monotonic() - started < 5  # bounded by the 0.3 s setting, not by link_timeout_ms (60 s)
        assert b'duro_answering_sample{worker="1"} 7.0' in text.splitlines()
        assert b'worker="2"' not in text
    finally:
        await asyncio.gather(*(link.close() for link in parts.links.values()))
        for server in servers:
            await server.close()


async def test_a_link_to_a_worker_that_does_not_read_is_dropped_past_its_buffer_bound() -> None:
    """A stopped sibling takes nothing: the unsent bytes stay bounded by max_buffered_bytes and what waits fails with LinkLost."""
    token = secrets.token_hex(4)
    limits = LinkLimits(timeout_ms=30_000, max_pending_requests=16, max_frame_bytes=1 << 20, max_buffered_bytes=1 << 20)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_name(token, 1))
    listener.listen(1)
    listener.setblocking(False)
    link = LinkClient(1, socket_name(token, 1), limits)
    try:
        asking = asyncio.ensure_future(link.metrics())  # connects; the "worker" accepts and never reads nor answers
        accepted, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_accept(listener), 10)
        await asyncio.sleep(0)
        assert link.connected
        replies_written = 0
        while link.connected:
            assert replies_written < 1_000, "the link was never dropped"
            link.reply_nowait(b"r" * 64 * 1024)
            replies_written += 1
            await asyncio.sleep(0)  # the turn ends: what was queued is written
        assert replies_written * 64 * 1024 > 1 << 20  # the kernel's buffers took some, the bound the rest
        with pytest.raises(LinkLost, match="max_link_buffered_bytes=1048576"):
            await asyncio.wait_for(asking, 10)
        assert not link.reply_nowait(b"after")
        accepted.close()
    finally:
        await link.close()
        listener.close()


async def test_a_worker_whose_asker_does_not_read_drops_the_link_past_its_buffer_bound() -> None:
    """The answering side's bound: a sibling that asks and never reads gets its link dropped once the unsent answers
    pass max_buffered_bytes, instead of the answers piling up in this worker's memory."""
    token = secrets.token_hex(4)
    answer_bytes = 256 * 1024
    limits = LinkLimits(timeout_ms=30_000, max_pending_requests=16, max_frame_bytes=1 << 20, max_buffered_bytes=1 << 20)

    async def unused(*_: object) -> int:
        raise AssertionError("not asked")

    asked: list[int] = []

    async def metrics() -> bytes:
        asked.append(1)
        return b"m" * answer_bytes

    server = LinkServer(socket_name(token, 1), LinkHandlers(unused, lambda _: None, unused, metrics), limits)
    await server.start()
    loop = asyncio.get_running_loop()
    asker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    asker.setblocking(False)
    try:
        await loop.sock_connect(asker, socket_name(token, 1))
        requests = 32  # 8 MiB of answers: far over the bound and the kernel's socket buffers
        await loop.sock_sendall(asker, b"".join(link_frame([METRICS, request_id]) for request_id in range(1, requests + 1)))
        async with asyncio.timeout(10):  # the asker reads nothing meanwhile; without the bound the link stays open
            while len(asked) < requests or server._connections:
                await asyncio.sleep(0.01)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := await loop.sock_recv(asker, 1 << 16):
                received += len(chunk)
        assert received < requests * answer_bytes, "the link was dropped before every answer was sent"
    finally:
        asker.close()
        await server.close()


def _link_appends(owner: int) -> float:
    return REGISTRY.get_sample_value(WORKER_LINK_APPENDS_TOTAL, {"owner": str(owner)}) or 0.0


def test_a_log_error_crosses_the_link_as_its_nearest_class_the_other_side_knows() -> None:
    """A subclass the asking worker does not know keeps what it means there (its outcome unknown, say), not a bare remote failure."""

    class CorruptSegment(LogError):
        pass

    assert error_name(LinkLost("x")) == "AppendOutcomeUnknownError"
    assert error_name(LinkUnavailable("x")) == "AppendNotSentError"
    assert error_name(AppendOutcomeUnknownError("x")) == "AppendOutcomeUnknownError"
    assert error_name(CorruptSegment("x")) == "LogError"
    assert error_name(ValueError("x")) == "RemoteError"
    assert issubclass(LinkUnavailable, AppendNotSentError)
