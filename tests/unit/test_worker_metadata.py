"""The node's shared values between the supervisor and its workers, over real socket pairs in one event loop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from duro.worker_metadata import MetadataService, WorkerMetadata


async def _worker(service: MetadataService, index: int, timeout_ms: int = 5_000) -> tuple[WorkerMetadata, socket.socket]:
    supervisor_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    await service.attach(index, supervisor_end)
    metadata = WorkerMetadata(worker_end, timeout_ms)
    await metadata.open()
    return metadata, worker_end


def _seen(metadata: WorkerMetadata, key: str) -> asyncio.Event:
    event = asyncio.Event()
    metadata.watch(lambda changed, value: event.set() if changed == key else None)
    return event


async def test_a_worker_whose_put_gave_up_waiting_still_applies_the_change(tmp_path: Path) -> None:
    service = MetadataService(tmp_path, timeout_ms=300)
    await service.load()
    asking, _ = await _worker(service, 0, timeout_ms=20)  # gives up after 40 ms
    silent_end, _silent_worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    await service.attach(1, silent_end)  # a worker that is up but never answers: the change waits 300 ms for it
    seen = _seen(asking, "subscription/s1")
    with pytest.raises(OSError, match="did not confirm storing 'subscription/s1' within twice worker.control_timeout_ms"):
        await asking.put("subscription/s1", b"v1")  # gives up before the silent worker's 300 ms are over
    await asyncio.wait_for(seen.wait(), 5)
    assert asking.values["subscription/s1"] == b"v1"
    assert service.values["subscription/s1"] == b"v1"


async def test_a_restarted_worker_keeps_its_new_channel_when_the_old_one_is_reported_lost_late(tmp_path: Path) -> None:
    service = MetadataService(tmp_path, timeout_ms=2_000)
    await service.load()
    origin, _ = await _worker(service, 0)
    old_supervisor_end, old_worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    await service.attach(1, old_supervisor_end)
    restarted, _ = await _worker(service, 1)  # worker 1 started again before its old channel's end was seen
    lost = asyncio.Event()
    old_channel_lost = service._lost

    def lost_then_note(worker: int, *args: object) -> None:
        old_channel_lost(worker, *args)  # type: ignore[arg-type]  # whatever the service passes
        lost.set()

    service._lost = lost_then_note  # type: ignore[method-assign]  # observe the old channel's end
    old_worker_end.close()
    await asyncio.wait_for(lost.wait(), 5)
    seen = _seen(restarted, "subscription/s2")
    await origin.put("subscription/s2", b"v2")
    await asyncio.wait_for(seen.wait(), 5)
    assert restarted.values["subscription/s2"] == b"v2"


async def test_a_starting_workers_progress_and_ready_reach_the_supervisor_in_order(tmp_path: Path) -> None:
    service = MetadataService(tmp_path, timeout_ms=2_000)
    await service.load()
    heard: list[tuple[int, str]] = []
    all_heard = asyncio.Event()
    service.on_progress = lambda worker, progress: heard.append((worker, progress))

    def ready(worker: int) -> None:
        heard.append((worker, "READY"))
        all_heard.set()

    service.on_ready = ready
    metadata, _ = await _worker(service, 3)
    metadata.progress("opening its state store")
    metadata.progress("replaying its partitions' log (7 log positions applied)")
    metadata.ready()
    await asyncio.wait_for(all_heard.wait(), 5)
    assert heard == [(3, "opening its state store"), (3, "replaying its partitions' log (7 log positions applied)"), (3, "READY")]
