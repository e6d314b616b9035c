"""`InvocationStatus.state`: each stored phase read back as its own dataclass with that phase's data, and the row layout unchanged."""

from __future__ import annotations

import msgpack
import pytest

from partition_worker.status import (
    BackingOff,
    Completed,
    Inboxed,
    InvocationStatus,
    Invoked,
    Paused,
    Phase,
    PhaseState,
    Scheduled,
    Suspended,
)
from wal.records import Failure, Outcome, ServiceType, Target

TARGET = Target("Counter", "add", "ada", ServiceType.VIRTUAL_OBJECT, None)
FAILURE = Failure(500, "boom")


def status(phase: Phase, **fields: object) -> InvocationStatus:
    return InvocationStatus(phase=phase, target=TARGET, created_at_ms=1, modified_at_ms=2).evolve(**fields)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (status(Phase.SCHEDULED, execute_at_ms=10_000), Scheduled(10_000)),
        (status(Phase.SCHEDULED), Scheduled(None)),
        (status(Phase.INBOXED, inbox_seq=7, inboxed_at_ms=5), Inboxed(7, 5)),
        (status(Phase.INVOKED, attempt=3), Invoked(3)),
        (status(Phase.SUSPENDED, waiting_completions=(1, 2), waiting_signals=(17,)), Suspended((1, 2), (17,), ())),
        (status(Phase.BACKING_OFF, attempt=2, next_retry_at_ms=900, last_failure=FAILURE), BackingOff(2, 900, FAILURE)),
        (status(Phase.PAUSED, last_failure=FAILURE), Paused(FAILURE)),
        (status(Phase.COMPLETED, outcome=Outcome(value=b"1"), completed_at_ms=50), Completed(Outcome(value=b"1"), 50)),
    ],
)
def test_each_phase_reads_back_with_its_data(row: InvocationStatus, expected: PhaseState) -> None:
    assert row.state == expected
    assert InvocationStatus.decode(row.encode()).state == expected, "the stored row carries every phase's data"


@pytest.mark.parametrize(
    ("row", "missing"),
    [
        (status(Phase.INBOXED), "inbox_seq"),
        (status(Phase.BACKING_OFF, attempt=2), "next_retry_at_ms"),
        (status(Phase.COMPLETED, completed_at_ms=50), "outcome"),
    ],
)
def test_a_phase_without_its_data_fails_loudly(row: InvocationStatus, missing: str) -> None:
    with pytest.raises(AssertionError, match=missing):
        _ = row.state


def test_the_row_layout_is_unchanged() -> None:
    """The phase states are read from the same flat row: phase is still its first field, stored as the Phase number."""
    row = status(Phase.BACKING_OFF, attempt=2, next_retry_at_ms=900)
    fields = msgpack.unpackb(row.encode())
    assert fields[0] == Phase.BACKING_OFF.value == 5
