"""The graceful phase of a node's stop: refuse new requests, drain attempts, hand partitions over, answer waiting requests.

Every step is bounded by one deadline (`shutdown.timeout_ms` from the signal);
whatever is left when it passes is closed by the node's ordinary shutdown. A
second signal cancels the drain the same way. The order matters:

0. The consumers of Kafka subscriptions stop: what they appended is durable
   and their positions are committed batch by batch; they leave their consumer
   groups, so other nodes take their topic partitions at once, and they release
   the reply-bus sinks of their pending invocations (step 4 waits on the bus).
1. The ingress answers every new request (health included, so a readiness
   probe fails) 503 with `Retry-After`: nothing is recorded, a client retries
   on another node.
2. The invoker starts no new attempt and closes the request stream of each
   running one, so an SDK that waits suspends; attempts still running after
   `shutdown.attempt_drain_timeout_ms` are aborted (the next leader runs them).
3. On Kafka the node leaves the consumer group, so the others take its
   partitions at the next rebalance instead of after the session timeout, and
   its processors stop.
4. Requests that still wait here get their replies from the partitions' new
   leaders (through `/internal/replies`), until the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ingress.http import Ingress
from partition_worker.invoker import Invoker
from partition_worker.worker import PartitionWorker
from wal.replies import ReplyBus

log = logging.getLogger("duro.drain")


@dataclass(slots=True)
class DrainReport:
    """What the graceful phase did, and how long each step took."""

    attempts_ended: int = 0
    attempts_aborted: int = 0
    attempts_s: float = 0.0
    handover_s: float = 0.0
    waiting_left: int = 0
    waiting_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DrainParts:
    node_id: int
    ingress: Ingress
    invoker: Invoker
    worker: PartitionWorker
    reply_bus: ReplyBus
    leave_cluster: Callable[[], Awaitable[None]] | None
    """Leaves the consumer group (Kafka); None on the embedded log, where nobody takes the partitions over."""
    stop_subscriptions: Callable[[], Awaitable[None]] | None = None
    """Stops this node's subscription consumers (they leave their groups)."""


async def drain(parts: DrainParts, deadline: float, attempt_drain_timeout_s: float, report: DrainReport) -> None:
    """Run the graceful phase until done or `deadline` (a `time.monotonic()` value); fills `report` as it goes.

    Cancelling it leaves the node in whatever step it reached; the node's
    ordinary shutdown closes the rest.
    """
    if parts.stop_subscriptions is not None:
        await parts.stop_subscriptions()
    parts.ingress.stop_accepting(f"node {parts.node_id} is shutting down")
    started = time.monotonic()
    ended, aborted = await parts.invoker.drain(max(0.0, min(attempt_drain_timeout_s, deadline - started)))
    report.attempts_ended, report.attempts_aborted = ended, aborted
    report.attempts_s = time.monotonic() - started
    if parts.leave_cluster is None:
        return  # one node on its own log: nobody else can answer what still waits
    started = time.monotonic()
    await parts.leave_cluster()
    await parts.worker.close()
    report.handover_s = time.monotonic() - started
    started = time.monotonic()
    try:
        await asyncio.wait_for(parts.reply_bus.wait_until_none_waiting(), max(0.0, deadline - started))
    except TimeoutError:
        pass
    report.waiting_left = parts.reply_bus.waiting_count
    report.waiting_s = time.monotonic() - started


def describe(report: DrainReport, elapsed_s: float, completed: bool) -> str:
    """One log line saying what the graceful phase did."""
    how = "drained" if completed else "stopped draining at its deadline or on a second signal"
    return (
        f"{how} in {elapsed_s:.2f} s: {report.attempts_ended} attempts ended or suspended and {report.attempts_aborted}"
        f" aborted ({report.attempts_s:.2f} s), partitions handed over in {report.handover_s:.2f} s,"
        f" {report.waiting_left} waiting requests left unanswered ({report.waiting_s:.2f} s)"
    )
