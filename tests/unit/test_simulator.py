"""The seeded partition simulator (`tests/sim/`): seeds keep every invariant, a seed replays exactly, and planted bugs are found.

`python -m tests.sim --seeds 100000` is the long run, and
`python -m tests.sim --seed S --verbose` replays a failing seed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from partition_worker import invoker as invoker_module
from partition_worker.invoker import Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.state_machine.context import ApplyContext
from tests.processes import REPO_ROOT
from tests.sim.simulation import InvariantViolation, replay_command, run_seed


@pytest.fixture(autouse=True)
def quiet_runtime() -> Iterator[None]:
    """The runtime logs every injected fault; a run of thousands of seeds keeps only its verdict."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def test_fifty_seeds_keep_every_invariant() -> None:
    """A smoke run for the unit gate; `tests/sim/test_many_seeds.py` runs thousands in the full suite."""
    for seed in range(50):
        try:
            run_seed(seed)
        except InvariantViolation as violation:
            pytest.fail(f"{violation}\nreplay it with: {replay_command(seed)}", pytrace=False)


def test_a_seed_replays_exactly_in_this_process_and_another() -> None:
    first, second = run_seed(7), run_seed(7)
    assert first.digest == second.digest and first.faults == second.faults and first.records == second.records
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.sim", "--seed", "7"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert f"digest {first.digest[:16]}" in result.stdout, result.stdout


def test_the_simulator_finds_an_attempt_that_ends_without_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant the bug issue 14 found: the abort timeout stops the attempt and records nothing."""
    stop = Invoker._stop

    def stop_without_record(self: Invoker, handle: object, reason: object) -> None:
        failure = getattr(reason, "failure", None)
        if failure is not None and "abort_timeout_ms" in failure.message:
            reason = invoker_module._NO_RECORD
        stop(self, handle, reason)  # type: ignore[arg-type]

    monkeypatch.setattr(Invoker, "_stop", stop_without_record)
    with pytest.raises(InvariantViolation, match="without a live attempt"):
        for seed in range(50):
            run_seed(seed)


def test_the_simulator_finds_a_dead_timer_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant the other one: a leader task that dies is only logged, and the partition keeps claiming it leads."""
    monkeypatch.setattr(PartitionProcessor, "_leader_task_ended", lambda self, task, what: None)
    with pytest.raises(InvariantViolation, match="never ended"):
        for seed in range(300):
            run_seed(seed)


def test_the_simulator_finds_a_count_that_goes_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant a hand-over that takes the head of an inbox without counting it: the inbox count drifts from the rows."""
    monkeypatch.setattr(ApplyContext, "_drop_inbox_head", lambda self, row, service: self.txn.delete(row))
    with pytest.raises(InvariantViolation, match="the counts apply keeps say"):
        for seed in range(50):
            run_seed(seed)
