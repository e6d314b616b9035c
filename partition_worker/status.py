"""The stored status of one invocation: its phase, pinned deployment, attempt and waiters.

The row is flat (one msgpack list; its layout only grows). Code that acts on
the phase reads `status.state`: one frozen dataclass per phase holding exactly
that phase's data (`Scheduled.execute_at_ms`, `Inboxed.inbox_seq`,
`BackingOff.next_retry_at_ms`, `Completed.outcome`, ...), built and checked
from the row, and dispatched with `match` and `assert_never`, so a phase
without its data fails loudly where it is read instead of being skipped by an
`is not None` test.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias, assert_never

from wal.records import Failure, Outcome, RetryPolicy, Sink, Target, compiled_replace, pack_struct, unpack_struct


class Phase(enum.IntEnum):
    """Where an invocation is in its life. Never renumber."""

    SCHEDULED = 1  # delayed send, waiting for its timer
    INBOXED = 2  # waiting in its key's inbox for the lock
    INVOKED = 3  # an attempt is (or should be) running
    SUSPENDED = 4  # waiting for a notification; no attempt running
    BACKING_OFF = 5  # the last attempt failed; a retry timer is set
    PAUSED = 6  # retries exhausted; resumes on request
    COMPLETED = 7  # outcome known, kept for its retention


@dataclass(frozen=True, slots=True)
class Scheduled:
    """Created, not started: a delayed send waits for its timer at `execute_at_ms` (None: it starts in the same apply)."""

    execute_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Inboxed:
    """Waiting in its key's inbox, at `inbox_seq`, for the key's lock."""

    inbox_seq: int
    inboxed_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Invoked:
    """Attempt number `attempt` is (or should be) running."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Suspended:
    """No attempt runs; the invocation waits for one of these notifications."""

    waiting_completions: tuple[int, ...]
    waiting_signals: tuple[int, ...]
    waiting_named_signals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BackingOff:
    """Attempt `attempt` failed with `last_failure`; its retry timer fires at `next_retry_at_ms`."""

    attempt: int
    next_retry_at_ms: int
    last_failure: Failure | None


@dataclass(frozen=True, slots=True)
class Paused:
    """Retries used up (or paused by request); resumes on request."""

    last_failure: Failure | None


@dataclass(frozen=True, slots=True)
class Completed:
    """Its outcome is known since `completed_at_ms`, kept for its retention."""

    outcome: Outcome
    completed_at_ms: int


PhaseState: TypeAlias = Scheduled | Inboxed | Invoked | Suspended | BackingOff | Paused | Completed


@dataclass(frozen=True, slots=True)
class InvocationStatus:
    phase: Phase
    target: Target
    created_at_ms: int
    modified_at_ms: int
    attempt: int = 0
    journal_length: int = 0
    command_count: int = 0
    deployment_id: str | None = None
    protocol_version: int | None = None
    response_sinks: tuple[Sink, ...] = ()
    idempotency_key: str | None = None
    completion_retention_ms: int = 0
    retry_count: int = 0
    waiting_completions: tuple[int, ...] = ()
    waiting_signals: tuple[int, ...] = ()
    waiting_named_signals: tuple[str, ...] = ()
    output: Outcome | None = None
    outcome: Outcome | None = None
    completed_at_ms: int | None = None
    inbox_seq: int | None = None
    execute_at_ms: int | None = None
    last_failure: Failure | None = None
    next_retry_at_ms: int | None = None
    # since 0.2 (introspection): who started it, and when it was inboxed, first ran and last started an attempt
    invoked_by_id: str | None = None
    invoked_by_target: str | None = None
    restarted_from: str | None = None
    inboxed_at_ms: int | None = None
    running_at_ms: int | None = None
    last_start_at_ms: int | None = None
    retry_policy: RetryPolicy | None = None  # since 0.2: from the Invoke record; None means DEFAULT_RETRY_POLICY
    pending_sleeps: tuple[tuple[int, int], ...] = ()  # since 0.2: (fire_at_ms, completion_id) of sleep timers not yet fired
    journal_retention_ms: int = 0  # since 0.2: keep the journal this long after completion (0: dropped at completion)
    pending_calls: tuple[tuple[int, str], ...] = ()  # since 0.2: (completion id, callee id) of calls not answered yet
    fail_on_deadlock: bool = False  # since 0.2: from the Invoke; a call of it that closes a wait-for cycle fails (508)
    last_attempt_server: str | None = None  # since 0.2: the SDK that answered the last attempt (its x-restate-server header)

    @property
    def is_completed(self) -> bool:
        return self.phase is Phase.COMPLETED

    @property
    def state(self) -> PhaseState:
        """The phase with its own data; an assertion names the phase and the missing field if the row lacks it."""
        match self.phase:
            case Phase.SCHEDULED:
                return Scheduled(self.execute_at_ms)
            case Phase.INBOXED:
                assert self.inbox_seq is not None, "an inboxed invocation has its inbox_seq"
                return Inboxed(self.inbox_seq, self.inboxed_at_ms)
            case Phase.INVOKED:
                return Invoked(self.attempt)
            case Phase.SUSPENDED:
                return Suspended(self.waiting_completions, self.waiting_signals, self.waiting_named_signals)
            case Phase.BACKING_OFF:
                assert self.next_retry_at_ms is not None, "an invocation backing off has its next_retry_at_ms"
                return BackingOff(self.attempt, self.next_retry_at_ms, self.last_failure)
            case Phase.PAUSED:
                return Paused(self.last_failure)
            case Phase.COMPLETED:
                assert self.outcome is not None and self.completed_at_ms is not None, "a completed invocation has its outcome and time"
                return Completed(self.outcome, self.completed_at_ms)
            case unknown:
                assert_never(unknown)

    @property
    def expires_at_ms(self) -> int | None:
        """When a completed invocation's status and outcome are removed."""
        if self.completed_at_ms is None:
            return None
        return self.completed_at_ms + self.completion_retention_ms

    @property
    def journal_expires_at_ms(self) -> int | None:
        """When a completed invocation's journal is removed (at most `expires_at_ms`)."""
        if self.completed_at_ms is None:
            return None
        return self.completed_at_ms + min(self.journal_retention_ms, self.completion_retention_ms)

    def evolve(self, **changes: object) -> InvocationStatus:
        """A copy with `changes` applied; like dataclasses.replace at a third of the cost (it is on the hot path: `_replace`)."""
        replaced: InvocationStatus = _replace(self, **changes)
        return replaced

    def encode(self) -> bytes:
        return pack_struct(self)

    @staticmethod
    def decode(data: bytes) -> InvocationStatus:
        return unpack_struct(InvocationStatus, data, {"phase": Phase})


_replace = compiled_replace(InvocationStatus)
