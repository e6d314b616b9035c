"""The supervisor's restart policy, driven with stand-in worker processes and a stand-in clock (no process is started)."""

from __future__ import annotations

import asyncio
import logging
import types
from pathlib import Path

import pytest

from duro import supervisor as supervisor_module
from duro.settings import DuroSettings, WorkerSettings
from duro.supervisor import Supervisor


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


class _KilledAfter:
    """A worker process that a signal ends once it has run `ran_s` seconds of the stand-in clock."""

    def __init__(self, clock: _Clock, ran_s: float, exit_code: int = -9) -> None:
        self._clock = clock
        self._ran_s = ran_s
        self._exit_code = exit_code
        self.pid = 4242
        self.returncode: int | None = None

    async def wait(self) -> int:
        await asyncio.sleep(0)
        self._clock.now += self._ran_s
        self.returncode = self._exit_code
        return self._exit_code


def _supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: _Clock) -> Supervisor:
    monkeypatch.setattr(supervisor_module, "time", types.SimpleNamespace(monotonic=clock.monotonic, sleep=lambda _: None))
    worker = WorkerSettings(restart_initial_backoff_ms=1, restart_max_backoff_ms=64)
    return Supervisor(DuroSettings(data_dir=tmp_path, workers=2, worker=worker), 2, "log")


async def _restart_pauses_ms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, deaths: int, ran_s: float
) -> list[int]:
    """The pauses before each restart of a worker that reports ready at once and is killed `ran_s` after each start."""
    clock = _Clock()
    supervisor = _supervisor(tmp_path, monkeypatch, clock)
    worker = supervisor._workers[1]
    starts = 0

    async def start(w: supervisor_module._Worker) -> None:
        nonlocal starts
        starts += 1
        w.started_at = clock.now
        w.process = _KilledAfter(clock, ran_s) if starts <= deaths else None  # type: ignore[assignment]  # a stand-in process
        supervisor._on_ready(w.index)

    monkeypatch.setattr(supervisor, "_start", start)
    caplog.set_level(logging.WARNING, "duro.supervisor")
    await start(worker)
    await asyncio.wait_for(supervisor._watch(worker), 10)
    return [record.args[3] for record in caplog.records if "restarting it in" in record.getMessage()]  # type: ignore[index]  # the log call's arguments


async def test_a_worker_that_ran_a_long_while_between_deaths_is_restarted_after_the_initial_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pauses = await _restart_pauses_ms(tmp_path, monkeypatch, caplog, deaths=4, ran_s=3_600.0)
    assert pauses == [1, 1, 1, 1], "each death came an hour after a start: none is one of a series"


async def test_a_worker_that_keeps_dying_soon_after_it_starts_waits_longer_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pauses = await _restart_pauses_ms(tmp_path, monkeypatch, caplog, deaths=8, ran_s=0.01)
    assert pauses == [1, 2, 4, 8, 16, 32, 64, 64]


async def test_a_worker_that_cannot_be_restarted_stops_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _Clock()
    supervisor = _supervisor(tmp_path, monkeypatch, clock)
    worker = supervisor._workers[1]
    worker.process = _KilledAfter(clock, 1.0)  # type: ignore[assignment]  # a stand-in process

    async def start(w: supervisor_module._Worker) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")  # fork refused

    monkeypatch.setattr(supervisor, "_start", start)
    watcher = supervisor._watcher(worker)
    await asyncio.wait_for(supervisor._stop_requested.wait(), 10)
    assert watcher.done()
    assert supervisor._exit_code == 1
    assert "worker 1 could not be watched or restarted" in supervisor._failure and "BlockingIOError" in supervisor._failure


@pytest.mark.parametrize(("exit_code", "restarted"), [(0, True), (-15, True), (2, False)])
async def test_a_worker_stopped_alone_is_restarted_and_one_that_failed_stops_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int, restarted: bool
) -> None:
    """Exit 0 comes only after a graceful stop: a SIGTERM to that worker alone (the node was not asked to stop) restarts it."""
    clock = _Clock()
    supervisor = _supervisor(tmp_path, monkeypatch, clock)
    worker = supervisor._workers[1]
    worker.process = _KilledAfter(clock, 1.0, exit_code)  # type: ignore[assignment]  # a stand-in process
    starts: list[int] = []

    async def start(w: supervisor_module._Worker) -> None:
        starts.append(w.index)
        w.process = None

    monkeypatch.setattr(supervisor, "_start", start)
    await asyncio.wait_for(supervisor._watch(worker), 10)
    assert starts == ([1] if restarted else [])
    assert supervisor._stop_requested.is_set() is not restarted
    assert supervisor._exit_code == (0 if restarted else exit_code)


def _starting_supervisor(tmp_path: Path, stall_ms: int) -> Supervisor:
    """A supervisor of two workers that have just been started (no process: the test plays their reports)."""
    supervisor = Supervisor(DuroSettings(data_dir=tmp_path, workers=2, worker=WorkerSettings(start_stall_timeout_ms=stall_ms)), 2, "log")
    for worker in supervisor._workers:
        worker.started_at = worker.progress_at = supervisor_module.time.monotonic()
    return supervisor


async def test_a_worker_whose_replay_keeps_progressing_may_take_longer_than_the_stall_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker 1 reports every 0.6 bounds for 6 bounds in all, then serves: it is never stuck, and the node is not failed."""
    clock = _Clock()
    monkeypatch.setattr(supervisor_module, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    supervisor = _starting_supervisor(tmp_path, stall_ms=10_000)
    supervisor._on_ready(0)

    async def slow_replay() -> None:
        for applied in range(1, 11):
            await asyncio.sleep(0)
            clock.now += 6.0
            supervisor._on_progress(1, f"replaying its partitions' log ({applied * 1000} log positions applied)")
        await asyncio.sleep(0)
        supervisor._on_ready(1)

    replay = asyncio.create_task(slow_replay())
    await asyncio.wait_for(supervisor._wait_all_ready(10.0), 10)
    await replay
    assert clock.now - 1_000.0 == 60.0  # six times the stall bound
    assert all(worker.ready for worker in supervisor._workers)
    assert not supervisor._stop_requested.is_set()
    assert supervisor._failure == ""


@pytest.mark.parametrize("repeats_itself", [False, True])
async def test_a_worker_that_stops_progressing_is_declared_stuck_with_its_last_report(tmp_path: Path, repeats_itself: bool) -> None:
    """Worker 1 reports twice, then goes quiet (or repeats its last report): the node fails naming it, within the real 0.3 s bound."""
    supervisor = _starting_supervisor(tmp_path, stall_ms=300)
    supervisor._on_ready(0)
    supervisor._on_progress(1, "opening its state store")
    supervisor._on_progress(1, "replaying its partitions' log (42 log positions applied)")

    async def repeat() -> None:
        while repeats_itself:
            supervisor._on_progress(1, "replaying its partitions' log (42 log positions applied)")
            await asyncio.sleep(0.01)

    repeating = asyncio.create_task(repeat())
    try:
        await asyncio.wait_for(supervisor._wait_all_ready(0.3), 10)
    finally:
        repeating.cancel()
    assert supervisor._stop_requested.is_set()
    assert supervisor._exit_code == 1
    assert supervisor._failure.startswith("worker 1 made no start-up progress for ")
    assert supervisor._failure.endswith(
        " s (worker.start_stall_timeout_ms=300; last: replaying its partitions' log (42 log positions applied))"
    )
    assert "worker 0" not in supervisor._failure


async def test_a_restarted_worker_that_stops_progressing_stops_the_node_as_at_the_first_start(tmp_path: Path) -> None:
    """Both workers served; worker 1 was restarted and goes quiet while replaying: the start bound holds for restarts too."""
    supervisor = _starting_supervisor(tmp_path, stall_ms=300)
    supervisor._on_ready(0)
    supervisor._on_ready(1)
    watching = asyncio.create_task(supervisor._wait_all_ready(0.3, until_stopped=True))
    await asyncio.sleep(0.4)
    assert not supervisor._stop_requested.is_set(), "every worker serves: nothing to bound"
    worker = supervisor._workers[1]
    worker.ready = False  # killed ...
    worker.starting = False
    await asyncio.sleep(0.4)  # ... and waiting to be restarted: its bound has not begun
    assert not supervisor._stop_requested.is_set()
    worker.ready, worker.starting = False, True  # what _start does
    worker.started_at = worker.progress_at = supervisor_module.time.monotonic()
    supervisor._changed.set()
    supervisor._on_progress(1, "replaying its partitions' log (7 log positions applied)")
    await asyncio.wait_for(watching, 10)
    assert supervisor._exit_code == 1
    assert supervisor._failure.startswith("worker 1 made no start-up progress for ")
    assert supervisor._failure.endswith("last: replaying its partitions' log (7 log positions applied))")
