"""Progress lines while a node (or worker) replays its partitions' log at start: log positions applied of those held.

A replay of a long log can take minutes; without these lines the log says
nothing between "replaying" and "ready". One INFO line every
`REPLAY_PROGRESS_INTERVAL_S` until cancelled (when every partition leads).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from wal.log import Log

log = logging.getLogger("duro.node")

REPLAY_PROGRESS_INTERVAL_S = 5.0


async def log_replay_progress(log_: Log, partitions: Iterable[int], applied_positions: Callable[[], int]) -> None:
    """Every REPLAY_PROGRESS_INTERVAL_S: `applied_positions()` (log positions the partitions applied, counted from 0) of
    the positions `partitions` held when the replay began (their end offsets then), until cancelled."""
    held = 0
    for partition in sorted(partitions):
        held += await log_.end_offset(partition)
    started = time.monotonic()
    while True:
        await asyncio.sleep(REPLAY_PROGRESS_INTERVAL_S)
        applied = applied_positions()
        log.info(
            "replaying its partitions' log: %d of %d log positions applied (%.0f%%) after %.0f s",
            applied,
            held,
            100.0 * min(applied, held) / held if held else 100.0,
            time.monotonic() - started,
        )
