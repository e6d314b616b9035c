"""One partition's processor: applies the log in order, commits with the applied offset, and leads.

It tails its log partition from the offset after the last applied one. Each
batch of records is applied in one transaction whose write batch also stores
the new applied offset, so a crash resumes exactly after the last committed
record. Once caught up it appends `AnnounceLeader` with an epoch above any
seen; applying its own announcement makes it the leader, and from then on it
carries out the actions apply returns: attempts (invoker), timers, outbox,
replies to waiting requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from partition_worker import keys, log_context, metrics
from partition_worker.actions import (
    AbortAttempt,
    Action,
    BecomeLeader,
    DeadlockDetected,
    InvokeAttempt,
    Notify,
    ReplyToIngress,
    ScheduleTimer,
    SendOutbox,
)
from partition_worker.invoker import Invoker
from partition_worker.outbox import OutboxShuffle
from partition_worker.settings import ProcessorSettings
from partition_worker.state_machine import StateMachine, counts
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import PartitionStore, Transaction
from partition_worker.timers import TimerService
from protocol.error_codes import InvocationErrorCode as Code
from wal.log import Log, LogError
from wal.records import AnnounceLeader, AttemptFailed, Envelope, Failure, IngressSink, Record, RecordBody, decode_record, encode_record
from wal.replies import Reply

log = logging.getLogger("duro.partition")


class StateAheadOfLogError(Exception):
    """The partition store has applied offsets the log does not hold: the log lost entries the state reflects."""

    def __init__(self, partition: int, applied_offset: int, log_end_offset: int) -> None:
        super().__init__(
            f"partition {partition}: the state store has applied the log up to offset {applied_offset}, but the log ends "
            f"{'empty' if log_end_offset == 0 else f'at offset {log_end_offset - 1}'}. The log lost entries whose effects the "
            "state already holds (a log cut with --truncate-corrupt-tail, restored from an older copy, or not this node's "
            "log); applying new entries over that state would corrupt it. Restore the log that belongs to this state, or "
            "remove the state store so that it is rebuilt from the log"
        )
        self.partition = partition
        self.applied_offset = applied_offset
        self.log_end_offset = log_end_offset


def applied_offset_of(store: PartitionStore) -> int:
    """The last log offset the store has applied, -1 if none."""
    raw = store.get(keys.APPLIED_OFFSET)
    return keys.decode_u64(raw) if raw is not None else -1


def check_state_within_log(partition: int, applied_offset: int, log_end_offset: int) -> None:
    """Raise StateAheadOfLogError if the store has applied an offset at or beyond `log_end_offset`."""
    if applied_offset >= log_end_offset:
        raise StateAheadOfLogError(partition, applied_offset, log_end_offset)


class PartitionProcessor:
    def __init__(
        self,
        partition: int,
        node_id: int,
        log_: Log,
        store: PartitionStore,
        machine: StateMachine,
        invoker: Invoker,
        deliver_reply: Callable[[IngressSink, Reply], object],
        settings: ProcessorSettings | None = None,
        clock_ms: Callable[[], int] | None = None,
        restore: Callable[[int, int], Awaitable[object]] | None = None,
    ) -> None:
        self._partition = partition
        self._restore = restore  # (partition, applied offset): bring the store up to a newer snapshot before applying
        self.node_id = node_id
        self._log = log_
        self._store = store
        self._machine = machine
        self._invoker = invoker
        self._deliver_reply = deliver_reply
        self.settings = settings or ProcessorSettings()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._load_position()
        self._caught_up_from = self.applied_offset
        self.replayed_records = 0  # records applied at start-up before leading (after any restore)
        self._leader_epoch = 0  # nonzero while this node leads
        self._announced = False
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._leading_since = 0.0
        self._leader_task_deaths = 0  # in a row, for the re-claim backoff
        self._reannounce: asyncio.Task[None] | None = None
        self._timers: TimerService | None = None
        self._outbox: OutboxShuffle | None = None
        self.leading = asyncio.Event()
        label = str(partition)
        self._applied_offset_gauge = metrics.applied_offset.labels(label)
        self._is_leader_gauge = metrics.is_leader.labels(label)

    def _load_position(self) -> None:
        """Read the applied offset and the highest leader epoch from the store (at start, and after a restore)."""
        self.applied_offset = applied_offset_of(self._store)
        raw_epoch = self._store.get(keys.LEADER_EPOCH)
        self._known_epoch = keys.decode_u64(raw_epoch) if raw_epoch is not None else 0

    # ------------------------------------------------------------ PartitionLeader

    @property
    def partition(self) -> int:
        return self._partition

    @property
    def leader_epoch(self) -> int:
        return self._leader_epoch

    @property
    def store(self) -> PartitionStore:
        return self._store

    async def append(self, body: RecordBody) -> int:
        return await self.append_many([body])

    async def append_many(self, bodies: list[RecordBody]) -> int:
        """Append records on behalf of this leader (its epoch); returns the offset of the last once durable."""
        now_ms = self._clock_ms()
        entries = [encode_record(Record(Envelope(now_ms, self._leader_epoch), body)) for body in bodies]
        return await self._log.append(self._partition, entries)

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Apply the partition's log forever. Cancelling stops leading and applying.

        Raises StateAheadOfLogError at once if the store has applied more than the log holds.
        """
        log_context.partition.set(self._partition)  # for the lines this task and the tasks it starts log
        try:
            if self._restore is not None:
                await self._restore(self._partition, self.applied_offset)
                self._load_position()
            await self._count_rows()
            catch_up_to = await self._log.end_offset(self._partition)
            check_state_within_log(self._partition, self.applied_offset, catch_up_to)
            self._caught_up_from = self.applied_offset
            if self.applied_offset + 1 >= catch_up_to:
                await self._claim()
            async for batch in self._log.tail(self._partition, self.applied_offset + 1, self.settings.max_apply_batch_records):
                self._apply_batch(batch)
                if not self._announced and self.applied_offset + 1 >= catch_up_to:
                    await self._claim()
        finally:
            if self._reannounce is not None:
                self._reannounce.cancel()
            self._step_down()

    async def _count_rows(self) -> None:
        """Give a store written before apply kept row counts its counts (`state_machine.counts`), before anything is applied.

        A store that has applied nothing has no rows to count and is marked at
        once; one with history is scanned once, in a worker thread.
        """
        if self._store.get(keys.COUNTS_COMPLETE) is not None:
            return
        if self.applied_offset < 0:
            counts.build(self._store)
            return
        started = time.monotonic()
        stop = threading.Event()
        building = asyncio.ensure_future(asyncio.to_thread(counts.build, self._store, stop.is_set))
        try:
            built = await asyncio.shield(building)
        except asyncio.CancelledError:
            stop.set()  # the thread must end before anyone else may apply to this store; it stops within a few rows
            await asyncio.wait([building])
            raise
        assert built is not None, "a build nobody stopped ends with the counts"
        log.info(
            "partition %d: counted %d timers and %d inbox entries once, in %.1f s (a store written before apply kept counts)",
            self._partition, built.timers, sum(built.inbox_by_service.values()), time.monotonic() - started,
        )  # fmt: skip

    async def _claim(self) -> None:
        """Announce this node as the leader once caught up; an announcement the log refuses is tried again with backoff, meanwhile the tail applies on."""
        try:
            await self._announce()
        except LogError as exc:
            log.warning("partition %d: the leader announcement was not appended (%s); trying again", self._partition, exc)
            self._schedule_reannounce(self.settings.leader_task_restart_initial_backoff_ms)

    async def _announce(self) -> None:
        if not self._announced:
            self.replayed_records = self.applied_offset - self._caught_up_from
            log.info(
                "partition %d caught up: replayed %d records (offsets %d..%d) before leading",
                self._partition, self.replayed_records, self._caught_up_from + 1, self.applied_offset,
            )  # fmt: skip
        self._announced = True
        epoch = self._known_epoch + 1
        entry = encode_record(Record(Envelope(self._clock_ms()), AnnounceLeader(self.node_id, epoch)))
        await self._log.append(self._partition, [entry])

    def _apply_batch(self, batch: list[tuple[int, bytes]]) -> None:
        txn = Transaction(self._store)
        actions: list[Action] = []
        for offset, data in batch:
            assert offset > self.applied_offset, f"partition {self._partition}: offset {offset} after applied {self.applied_offset}"
            actions.extend(self._machine.apply(txn, decode_record(data)))
            self.applied_offset = offset
        txn.put(keys.APPLIED_OFFSET, keys.encode_u64(self.applied_offset))
        txn.commit()
        self._applied_offset_gauge.set(self.applied_offset)
        for action in actions:
            self._dispatch(action)

    def _dispatch(self, action: Action) -> None:
        if isinstance(action, BecomeLeader):
            self._known_epoch = max(self._known_epoch, action.leader_epoch)
            metrics.leader_changes.labels(str(self._partition)).inc()
            metrics.leader_epoch.labels(str(self._partition)).set(action.leader_epoch)
            if action.node_id == self.node_id:
                self._become_leader(action.leader_epoch)
            else:
                self._step_down()
                self._schedule_reannounce()
            return
        if not self._leader_epoch:
            return  # followers apply but do not act
        if isinstance(action, InvokeAttempt):
            self._invoker.start(self, action.invocation_id, action.attempt)
        elif isinstance(action, Notify):
            self._invoker.notify(action)
        elif isinstance(action, AbortAttempt):
            self._invoker.abort(action.invocation_id, action.attempt)
        elif isinstance(action, ReplyToIngress):
            self._deliver_reply(action.sink, action.reply)
        elif isinstance(action, ScheduleTimer):
            assert self._timers is not None, "a leader runs a timer service"
            self._timers.schedule(action.fire_at_ms, action.invocation_id, action.timer_kind, action.ref)
        elif isinstance(action, SendOutbox):
            assert self._outbox is not None, "a leader runs an outbox shuffle"
            self._outbox.offer(action.seq, action.partition_key, action.body)
        elif isinstance(action, DeadlockDetected):
            verdict = "failed with 508 to break it" if action.failed else "reported (fail_deadlocked_calls is off)"
            log.warning("deadlock on partition %d: %s; the call %s %s", self._partition, action.cycle, action.invocation_id, verdict)
            metrics.deadlocks_detected.labels("failed" if action.failed else "reported").inc()
        else:  # pragma: no cover - the union is closed
            raise AssertionError(f"no handler for action {action!r}")

    def _schedule_reannounce(self, delay_ms: int | None = None) -> None:
        """Claim the partition again (a higher epoch) after `delay_ms`, unless this node leads by then.

        Two cases: another node leads, yet this processor still runs, so this
        node still owns the partition (two nodes announced the same epoch and
        only the first counts, or this node was paused past its session; if
        ownership really moved, the processor is cancelled before the delay
        ends); or one of this node's leader tasks died and it stepped down. An
        announcement the log refuses is tried again with backoff.
        """
        if self._reannounce is not None and not self._reannounce.done():
            return
        settings = self.settings

        async def reannounce() -> None:
            await asyncio.sleep((settings.reannounce_delay_ms if delay_ms is None else delay_ms) / 1000)
            backoff_ms = settings.leader_task_restart_initial_backoff_ms
            while not self._leader_epoch:
                log.info("node %d re-claims partition %d after epoch %d", self.node_id, self._partition, self._known_epoch)
                try:
                    await self._announce()
                    return
                except LogError as exc:
                    log.warning("partition %d: the re-claim was not appended (%s); trying again in %d ms", self._partition, exc, backoff_ms)
                    await asyncio.sleep(backoff_ms / 1000)
                    backoff_ms = min(2 * backoff_ms, settings.leader_task_restart_max_backoff_ms)

        self._reannounce = _supervised(reannounce(), f"re-announce of partition {self._partition}")

    def _become_leader(self, epoch: int) -> None:
        self._step_down()
        self._leader_epoch = epoch
        self._leading_since = asyncio.get_running_loop().time()
        self._timers = TimerService(self._store, self.append_many, self._clock_ms, self.settings.timer_window_ms)
        self._outbox = OutboxShuffle(
            self._log,
            self._machine.config.producer_id,
            self.append_many,
            self._clock_ms,
            self.settings.max_outbox_batch_messages,
            self.settings.leader_task_restart_initial_backoff_ms,
            self.settings.leader_task_restart_max_backoff_ms,
        )
        self._leader_tasks = [
            self._leader_task(self._timers.run(), "timers"),
            self._leader_task(self._outbox.run(), "outbox"),
            self._leader_task(self._check_running_forever(), "running check"),
        ]
        self.leading.set()
        self._is_leader_gauge.set(1)
        log.debug("node %d leads partition %d at epoch %d", self.node_id, self._partition, epoch)

    async def _check_running_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.running_check_interval_ms / 1000)
            await self.check_running()

    async def check_running(self) -> list[str]:
        """Check the effect side's invariant: every running invocation has a live attempt, or its end is recorded and not yet applied.

        An invocation that has neither would stay running for ever (its key
        blocked, resume and cancel doing nothing): each one found is counted
        in `duro_partition_running_without_attempt_total`, logged, and failed
        with an `AttemptFailed` so that it retries by its policy. Returns the
        ids found. Does nothing unless this node leads and its invoker runs
        attempts (not while draining).
        """
        if not self._leader_epoch or self._invoker.draining:
            return []
        applied_offset = self.applied_offset
        self._invoker.forget_ended(self._partition, applied_offset)
        counted = self._store.get(keys.RUNNING_COUNT)
        if counted is not None and keys.decode_u64(counted) == 0:
            return []  # nothing runs: no scan of an emptied index (it steps over every deletion until RocksDB compacts them)
        orphans: list[tuple[str, int]] = []
        for row, _ in self._store.scan(keys.RUNNING_PREFIX):
            invocation_id = keys.running_id_of(row)
            raw = self._store.get(keys.invocation_key(invocation_id))
            status = InvocationStatus.decode(raw) if raw is not None else None
            if status is None or status.phase is not Phase.INVOKED:
                continue
            if not self._invoker.accounts_for(self._partition, invocation_id, status.attempt, applied_offset):
                orphans.append((invocation_id, status.attempt))
        if not orphans:
            return []
        metrics.running_without_attempt.labels(str(self._partition)).inc(len(orphans))
        log.error(
            "partition %d: %d invocations running without a live attempt or a recorded end (%s); failing them so they retry",
            self._partition,
            len(orphans),
            ", ".join(f"{i}#{a}" for i, a in orphans[:10]),
        )
        failure = Failure(Code.INTERNAL, "the attempt ended without a record of how it ended (found by the leader's running check)")
        await self.append_many([AttemptFailed(invocation_id, attempt, failure) for invocation_id, attempt in orphans])
        return [invocation_id for invocation_id, _ in orphans]

    def _leader_task(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """A task that runs while this node leads; its death is never silent (`_leader_task_ended`)."""
        task = asyncio.create_task(coro, name=f"{what} of partition {self._partition}")
        task.add_done_callback(lambda t: self._leader_task_ended(t, what))
        return task

    def _leader_task_ended(self, task: asyncio.Task[None], what: str) -> None:
        """A leader task ended other than by cancellation: step down, count it, and claim the partition again after a backoff.

        The new epoch starts every leader task afresh from the store (timers
        rescanned, the outbox re-sent, running invocations restarted), the
        one path a leader change already takes. Until then the partition has
        no working leader, which the node's readiness reports.
        """
        if task.cancelled() or task not in self._leader_tasks:
            return  # stopped on purpose, or a task of an epoch already left
        error = task.exception() or RuntimeError(f"the {what} task returned; it must run until cancelled")
        metrics.leader_task_failures.labels(str(self._partition), what).inc()
        now = asyncio.get_running_loop().time()
        if now - self._leading_since > self.settings.leader_task_restart_max_backoff_ms / 1000:
            self._leader_task_deaths = 0  # it had run well for a while: start the backoff afresh
        delay_ms = min(
            self.settings.leader_task_restart_initial_backoff_ms * 2**self._leader_task_deaths,
            self.settings.leader_task_restart_max_backoff_ms,
        )
        self._leader_task_deaths += 1
        log.critical(
            "partition %d: the %s task died (%r); stepping down, re-claiming the partition in %d ms",
            self._partition,
            what,
            error,
            delay_ms,
            exc_info=error,
        )
        self._step_down()
        self._schedule_reannounce(delay_ms)

    @property
    def has_working_leader(self) -> bool:
        """True while this node leads the partition with every leader task alive."""
        return bool(self._leader_epoch) and all(not task.done() for task in self._leader_tasks)

    def _step_down(self) -> None:
        if self._leader_epoch:
            self._invoker.abort_partition(self._partition)
        self._leader_epoch = 0
        self.leading.clear()
        self._is_leader_gauge.set(0)
        for task in self._leader_tasks:
            task.cancel()
        self._leader_tasks = []
        self._timers = None
        self._outbox = None


def _supervised(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A background task whose unexpected death is logged loudly (and ends the process's health)."""
    task = asyncio.create_task(coro, name=name)

    def _done(t: asyncio.Task[None]) -> None:
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            log.critical("%s died: %r", name, exc, exc_info=exc)

    task.add_done_callback(_done)
    return task
