"""What applying a record asks the partition leader to do, as a closed set of frozen dataclasses.

Apply never performs I/O; it returns these. The leader carries them out after
the record's changes are committed; a follower drops them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from wal.records import IngressSink, RecordBody
from wal.replies import Reply


@dataclass(frozen=True, slots=True)
class InvokeAttempt:
    """Start attempt `attempt` of an invocation: read its journal and call the deployment."""

    invocation_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Notify:
    """Push a stored notification to a running attempt (`entry_index` -1: a V7 run ack, not a journal entry)."""

    invocation_id: str
    attempt: int
    entry_index: int
    message_type: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class AbortAttempt:
    """Stop a running attempt: the invocation completed, was killed or moved on."""

    invocation_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ReplyToIngress:
    sink: IngressSink
    reply: Reply


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    fire_at_ms: int
    invocation_id: str
    timer_kind: int
    ref: int


@dataclass(frozen=True, slots=True)
class SendOutbox:
    """Deliver an outbox message to the partition owning `partition_key`; then truncate up to `seq`."""

    seq: int
    partition_key: int
    body: RecordBody


@dataclass(frozen=True, slots=True)
class BecomeLeader:
    """A leader epoch was applied: the node it names leads the partition from here on."""

    node_id: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class DeadlockDetected:
    """A queued call closed a cycle of invocations waiting on each other: the leader logs and counts it."""

    invocation_id: str
    cycle: str
    failed: bool


Action = Union[InvokeAttempt, Notify, AbortAttempt, ReplyToIngress, ScheduleTimer, SendOutbox, BecomeLeader, DeadlockDetected]
