"""Tests of the node's way out: the capped graceful phase, fatal errors, the watchdog and failing closes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from duro.lifecycle import EXIT_FATAL, EXIT_OK, EXIT_STUCK, Lifecycle

WAIT_TIMEOUT_S = 10.0


class HardExit:
    """Records the status the watchdog would have ended the process with."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.called = threading.Event()

    def __call__(self, status: int) -> None:
        self.status = status
        self.called.set()


def lifecycle(shutdown_timeout_ms: int = 200, close_timeout_ms: int = 200) -> tuple[Lifecycle, HardExit]:
    hard_exit = HardExit()
    return Lifecycle(shutdown_timeout_ms, close_timeout_ms, hard_exit), hard_exit


def recorded_step(node: Lifecycle) -> list[str]:
    """Register a graceful step that records that it ran."""
    ran: list[str] = []

    async def step() -> None:
        ran.append("drained")

    node.on_graceful("drain", step)
    return ran


async def test_the_graceful_phase_ends_when_its_steps_are_done() -> None:
    node, _ = lifecycle(shutdown_timeout_ms=60_000)
    ran = recorded_step(node)
    node.request_stop("SIGTERM received")
    async with asyncio.timeout(WAIT_TIMEOUT_S):
        await node.graceful_phase()
    assert ran == ["drained"]
    assert node.exit_code == EXIT_OK
    node.cancel_watchdog()


async def test_a_step_longer_than_the_cap_is_cut_at_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    node, _ = lifecycle(shutdown_timeout_ms=100)
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    node.on_graceful("answer in-flight requests", forever)
    node.request_stop("SIGTERM received")
    started = asyncio.get_running_loop().time()
    await node.graceful_phase()
    assert 0.09 <= asyncio.get_running_loop().time() - started < WAIT_TIMEOUT_S
    assert cancelled.is_set()
    assert "graceful shutdown cut short; still running: answer in-flight requests" in caplog.text
    node.cancel_watchdog()


async def test_a_fatal_error_skips_the_graceful_phase_and_exits_1() -> None:
    node, _ = lifecycle(shutdown_timeout_ms=60_000)
    ran = recorded_step(node)
    node.fail("a partition processor died")
    assert node.stop_requested.is_set()
    await node.graceful_phase()
    assert ran == []
    assert node.exit_code == EXIT_FATAL
    node.cancel_watchdog()


@pytest.mark.parametrize(
    ("interruption", "exit_code"),
    [(lambda node: node.fail("the log failed"), EXIT_FATAL), (lambda node: node.request_stop("SIGINT received"), EXIT_OK)],
    ids=["fatal error", "second signal"],
)
async def test_the_graceful_phase_is_cut_short_by(interruption: Callable[[Lifecycle], None], exit_code: int) -> None:
    node, _ = lifecycle(shutdown_timeout_ms=60_000)
    node.on_graceful("wait", lambda: asyncio.sleep(3600))
    node.request_stop("SIGTERM received")
    phase = asyncio.create_task(node.graceful_phase())
    await asyncio.sleep(0.01)
    interruption(node)
    async with asyncio.timeout(WAIT_TIMEOUT_S):
        await phase
    assert node.exit_code == exit_code
    node.cancel_watchdog()


async def test_the_watchdog_ends_a_process_that_does_not_finish_stopping(caplog: pytest.LogCaptureFixture) -> None:
    node, hard_exit = lifecycle(shutdown_timeout_ms=50, close_timeout_ms=50)
    node.request_stop("SIGTERM received")
    assert await asyncio.to_thread(hard_exit.called.wait, WAIT_TIMEOUT_S)
    assert hard_exit.status == EXIT_STUCK
    assert "did not finish stopping within 0.1 s" in caplog.text


async def test_no_watchdog_fires_once_cancelled() -> None:
    node, hard_exit = lifecycle(shutdown_timeout_ms=10, close_timeout_ms=10)
    node.fail("boom")
    node.cancel_watchdog()
    assert not await asyncio.to_thread(hard_exit.called.wait, 0.2)


async def test_a_failing_close_is_logged_the_next_one_runs_and_the_exit_status_is_1(caplog: pytest.LogCaptureFixture) -> None:
    node, _ = lifecycle()
    closed: list[str] = []

    def broken() -> None:
        raise OSError("Read-only file system")

    async def fine() -> None:
        closed.append("log")

    await node.closing("the state store", broken)()
    await node.closing("the log", fine)()
    assert closed == ["log"]
    assert node.exit_code == EXIT_FATAL
    assert "closing the state store failed: OSError('Read-only file system')" in caplog.text


async def test_start_up_work_is_abandoned_when_a_stop_comes_first() -> None:
    node, _ = lifecycle()
    never = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(node.unless_stopped(never))
    await asyncio.sleep(0.01)
    node.fail("a partition processor died")
    async with asyncio.timeout(WAIT_TIMEOUT_S):
        assert await waiting is None
    assert never.cancelled()
    assert await node.unless_stopped(asyncio.sleep(0, result=True)) is None, "once stopped, nothing more starts"
    node.cancel_watchdog()
