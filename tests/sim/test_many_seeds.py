"""Thousands of simulator seeds, run by the full suite (CI): each keeps every invariant of `tests/sim/simulation.py`.

`DURO_SIM_SEEDS` (default 2000) and `DURO_SIM_FIRST_SEED` (default 0) choose
the seeds. A failure names its seed and the command that replays it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest

from tests.sim.simulation import InvariantViolation, replay_command, run_seed

SEEDS = int(os.environ.get("DURO_SIM_SEEDS", "2000"))
FIRST_SEED = int(os.environ.get("DURO_SIM_FIRST_SEED", "0"))


@pytest.fixture(autouse=True)
def quiet_runtime() -> Iterator[None]:
    """The runtime logs every injected fault; a run of thousands of seeds keeps only its verdict."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.timeout(900)
def test_every_seed_keeps_every_invariant() -> None:
    started = time.perf_counter()
    records = faults = 0
    for seed in range(FIRST_SEED, FIRST_SEED + SEEDS):
        try:
            report = run_seed(seed)
        except InvariantViolation as violation:
            pytest.fail(f"{violation}\nreplay it with: {replay_command(seed)}", pytrace=False)
        records += report.records
        faults += sum(report.faults.values())
    print(f"\n{SEEDS} seeds: {records} records, {faults} faults, {time.perf_counter() - started:.1f} s")
    assert faults > SEEDS, "the seeds inject faults"
