"""The progress lines a node logs while it replays its partitions' log at start."""

from __future__ import annotations

import asyncio
import logging

import pytest

from duro import replay_progress
from wal.memory import MemoryLog


async def test_a_long_replay_logs_positions_applied_of_those_held_every_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(replay_progress, "REPLAY_PROGRESS_INTERVAL_S", 0.05)
    log = MemoryLog(3)
    await log.append(0, [b"a"] * 6)
    await log.append(2, [b"b"] * 4)
    await log.append(1, [b"c"] * 5)  # partition 1 is another worker's: not counted
    applied = [0]
    caplog.set_level(logging.INFO, "duro.node")
    task = asyncio.create_task(replay_progress.log_replay_progress(log, {0, 2}, lambda: applied[0]))
    try:
        for reached, percent in ((3, 30), (7, 70)):
            applied[0] = reached
            line = f"replaying its partitions' log: {reached} of 10 log positions applied ({percent}%) after "
            async with asyncio.timeout(10):  # a line comes every interval: wait for the one with this count
                while not any(record.getMessage().startswith(line) for record in caplog.records):
                    await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await log.close()
    assert task.cancelled(), "it logs until cancelled"
