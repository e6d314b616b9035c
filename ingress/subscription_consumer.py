"""One subscription's consumer on one node: Kafka records in, durable Invoke records out, positions committed only after.

The node is one member of the subscription's consumer group (`group.id`),
which spreads the topic's partitions over the nodes and moves a silent node's
share to the others after the session timeout. Each poll returns a batch; its
records become Invokes (`subscription_events`) and each duro partition's share
is appended in offset order. The consumer polls on while up to
`max_inflight_batches` batches are being appended, but a batch's append to a
partition starts only once the previous batch's append to that partition
succeeded, so per Kafka partition and duro partition the offsets written only
grow and none is written after one that failed. Batches settle in order; the
positions of settled batches are committed in the background, at most every
`commit_interval_ms` (as librdkafka's auto-commit does for Restate). A crash before
the commit delivers those records again, to this node or another; the Invokes
they make carry the same (producer, offset) dedup tags and the partitions drop
them.

Backpressure: every Invoke names this node's reply bus as its response sink,
so the consumer knows how many of its invocations are still pending. At
`max_pending_invocations` it pauses its partitions (still polling, so it stays
in the group) and resumes once no more than `resume_pending_invocations` are
pending: it then fetches a batch's worth instead of a record per completed
invocation (each record alone would cost its own poll, append and settle). An answer can be lost (a leader change, a
duplicate that was dropped); a pending invocation silent for
`pending_nudge_interval_ms` is asked for again with an Attach, which the
partition answers once the invocation is done.

A rebalance waits for the batches in flight and commits their positions before
the partitions go; so does a stop. `run` returns only by cancellation or an
exception; the caller (the controller) restarts it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from ingress import kafka_options, metrics
from ingress.registry import Registry, ResolvedHandler
from ingress.settings import IngressSettings, SubscriptionSettings
from ingress.subscription_events import EventTarget, PartitionEvents, RecordProblem
from ingress.subscriptions import KafkaCluster, Subscription
from wal.log import Log, append_runs
from wal.partitioner import partition_of
from wal.records import Attach, Envelope, IngressSink, Record, RetryPolicy, encode_record
from wal.replies import Reply, ReplyBus, TooManyWaitingRequests

log = logging.getLogger("duro.subscriptions")


class SinkUnavailable(Exception):
    """The subscription's handler is no longer registered; the consumer stops until it is (the controller retries)."""


@dataclass(slots=True)
class _Pending:
    invocation_id: str
    sink: IngressSink
    partition: int
    asked_at: float  # monotonic seconds: when the outcome was last asked for


@dataclass(slots=True)
class _InFlight:
    """A batch whose appends were started: `done` completes once all are durable; then its positions may be committed."""

    done: asyncio.Future[list[None]]
    positions: dict[TopicPartition, int]
    counts: dict[TopicPartition, int]
    registered: list[int]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SubscriptionConsumer:
    """Consumes `subscription`'s topic from `cluster` into `log` until cancelled (see the module docstring)."""

    def __init__(
        self,
        subscription: Subscription,
        cluster: KafkaCluster,
        deployments: Registry,
        log_: Log,
        reply_bus: ReplyBus,
        settings: SubscriptionSettings,
        ingress_settings: IngressSettings,
        retry_policy: RetryPolicy,
        node_id: int,
    ) -> None:
        self.subscription = subscription
        self.cluster = cluster
        self._deployments = deployments
        self._log = log_
        self._bus = reply_bus
        self._settings = settings
        self._ingress_settings = ingress_settings
        self._retry_policy = retry_policy
        self._node_id = node_id
        self._pending: dict[int, _Pending] = {}
        self._room = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._paused = False
        self._uncommitted: dict[TopicPartition, int] = {}
        self._inflight: asyncio.Queue[_InFlight] = asyncio.Queue(maxsize=settings.max_inflight_batches)
        self._last_append: dict[int, asyncio.Task[None]] = {}
        self._commit_wanted = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._labels = {"subscription": subscription.id}
        self._resume_at = min(settings.resume_pending_invocations, settings.max_pending_invocations - 1)
        self._pending_gauge = metrics.subscription_pending.labels(**self._labels)
        self._resolved: ResolvedHandler | None = None  # the registration `_builders_by_tp` were made for
        self._builders_by_tp: dict[TopicPartition, PartitionEvents] = {}
        self._records_counters: dict[TopicPartition, Counter] = {}  # duro_subscription_records_total per topic partition

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def consumer_properties(self) -> dict[str, str]:
        """The cluster's properties overridden by the subscription's options."""
        return {**self.cluster.properties, **self.subscription.options}

    async def run(self) -> None:
        properties = self.consumer_properties()
        kwargs = {
            "session_timeout_ms": self._settings.session_timeout_ms,
            "heartbeat_interval_ms": self._settings.heartbeat_interval_ms,
            "max_poll_interval_ms": self._settings.max_poll_interval_ms,
            "auto_offset_reset": "latest",
            **kafka_options.consumer_kwargs(properties),
            "enable_auto_commit": False,
        }
        consumer = AIOKafkaConsumer(**kwargs)
        self._consumer = consumer
        await consumer.start()
        settler = asyncio.create_task(self._settle_forever(), name=f"settle {self.subscription.id}")
        helpers = [
            settler,
            asyncio.create_task(self._nudge_forever(), name=f"nudge {self.subscription.id}"),
            asyncio.create_task(self._commit_forever(consumer), name=f"commit {self.subscription.id}"),
            asyncio.create_task(self._refresh_lag_forever(consumer), name=f"lag {self.subscription.id}"),
        ]
        try:
            consumer.subscribe([self.subscription.topic], listener=_Rebalance(self, consumer))
            while True:
                for helper in helpers:
                    if helper.done():
                        helper.result()  # its failure is ours
                        raise RuntimeError(f"{helper.get_name()} stopped")
                await self._step(consumer)
        finally:
            await self._stop_helpers(consumer, settler, helpers)
            for pending in self._pending.values():
                self._bus.release(pending.sink)
            self._pending.clear()
            self._forget_metrics()
            await asyncio.shield(consumer.stop())

    # ------------------------------------------------------------ rebalances

    async def partitions_revoked(self, kafka: AIOKafkaConsumer, revoked: list[TopicPartition]) -> None:
        """Before partitions move: no new batch starts, the ones in flight settle, every durable position is committed."""
        async with self._batch_lock:
            if not await self._settled_in_time():
                log.warning(
                    "subscription %s: batches still in flight at a rebalance; their records will be delivered again", self.subscription.id
                )
            await self._commit(kafka)
            self._forget_partitions(revoked)

    def partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Log the new share: the log names the topic partitions' owner after every rebalance."""
        partitions = sorted(tp.partition for tp in assigned)
        log.info(
            "subscription %s: node %d consumes %s partitions %s (group %s)",
            self.subscription.id, self._node_id, self.subscription.topic, partitions, self.subscription.group_id,
        )  # fmt: skip

    # ------------------------------------------------------------ the loop

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        room = self._settings.max_pending_invocations - len(self._pending)
        if room <= 0 or (self._paused and len(self._pending) > self._resume_at):
            self._pause(consumer)
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), self._settings.poll_timeout_ms / 1000)
            except TimeoutError:
                pass
            # Keeps this member alive in the group; a partition assigned since the pause above may still return records.
            batch = await consumer.getmany(timeout_ms=0)
        else:
            self._resume(consumer)
            batch = await consumer.getmany(
                timeout_ms=self._settings.poll_timeout_ms, max_records=min(room, self._settings.max_batch_records)
            )
        if batch:
            async with self._batch_lock:
                await self._deliver(batch)

    def _pause(self, consumer: AIOKafkaConsumer) -> None:
        consumer.pause(*consumer.assignment())  # every poll: partitions assigned meanwhile start paused too
        if not self._paused:
            self._paused = True
            metrics.subscription_paused.labels(**self._labels).set(1)
            log.info("subscription %s paused: %d invocations pending (max_pending_invocations)", self.subscription.id, len(self._pending))

    def _resume(self, consumer: AIOKafkaConsumer) -> None:
        if self._paused:
            self._paused = False
            consumer.resume(*consumer.paused())
            metrics.subscription_paused.labels(**self._labels).set(0)
            log.info("subscription %s resumed: %d invocations pending", self.subscription.id, len(self._pending))

    async def _deliver(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Append the batch's Invokes (each partition's share in offset order); then its positions may be committed."""
        builders = self._builders()
        now_ms = _now_ms()
        partition_count = self._log.partition_count
        entries: dict[int, list[bytes]] = {}
        registered: list[int] = []
        positions: dict[TopicPartition, int] = {}
        counts: dict[TopicPartition, int] = {}
        now = time.monotonic()
        for tp, records in batch.items():
            events = self._events_of(builders, tp)
            delivered = 0
            for record in records:
                sink, outcome = self._register()
                timestamp_ms = record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None
                event = events.build(record.offset, timestamp_ms, record.key, record.value, record.headers, sink, now_ms)
                if event.problem is not None:
                    self._report(record, event.problem)
                if event.entry is None:
                    if sink is not None:
                        self._bus.release(sink)
                    continue
                partition = partition_of(event.partition_key, partition_count)
                share = entries.get(partition)
                if share is None:
                    entries[partition] = [event.entry]
                else:
                    share.append(event.entry)
                delivered += 1
                if sink is not None and outcome is not None:
                    self._pending[sink.request_id] = _Pending(event.invocation_id, sink, partition, now)
                    registered.append(sink.request_id)
                    outcome.add_done_callback(functools.partial(self._settled, sink.request_id))
            if delivered:
                counts[tp] = delivered
            positions[tp] = records[-1].offset + 1
        self._pending_gauge.set(len(self._pending))
        appends = [self._chained_append(partition, share) for partition, share in entries.items()]
        done: asyncio.Future[list[None]] = asyncio.gather(*appends)
        await self._inflight.put(_InFlight(done, positions, counts, registered))

    def _builders(self) -> dict[TopicPartition, PartitionEvents]:
        """The event builders of the handler as registered now, per topic partition (made anew once the registration changes)."""
        subscription = self.subscription
        resolved = self._deployments.resolve(subscription.service, subscription.handler)
        if resolved is None:
            raise SinkUnavailable(f"subscription {subscription.id}: handler {subscription.sink} is not registered (any more)")
        if resolved is not self._resolved:
            self._resolved = resolved
            self._builders_by_tp = {}
        return self._builders_by_tp

    def _events_of(self, builders: dict[TopicPartition, PartitionEvents], tp: TopicPartition) -> PartitionEvents:
        events = builders.get(tp)
        if events is None:
            assert self._resolved is not None, "_builders resolved the handler"
            events = builders[tp] = PartitionEvents(self._target_of(self._resolved), tp.topic, tp.partition)
        return events

    def _chained_append(self, partition: int, share: list[bytes]) -> asyncio.Task[None]:
        """Append `share` once the previous batch's append to the same partition succeeded (nothing after a missing offset)."""
        previous = self._last_append.get(partition)
        task = asyncio.create_task(self._append_after(previous, partition, share), name=f"append {self.subscription.id} p{partition}")
        self._last_append[partition] = task
        return task

    async def _append_after(self, previous: asyncio.Task[None] | None, partition: int, share: list[bytes]) -> None:
        if previous is not None:
            await asyncio.shield(previous)  # raises its failure: a later batch must not be written after a lost one
        for run in append_runs(share, self._log.max_append_bytes):  # each event fits one append; a batch of them may not
            await self._log.append(partition, run)

    async def _settle_forever(self) -> None:
        """Take the batches in flight in order; once one is durable its positions may be committed (its failure is the consumer's)."""
        while True:
            batch = await self._inflight.get()
            try:
                await self._settle(batch)
            finally:
                self._inflight.task_done()

    async def _settle(self, batch: _InFlight) -> None:
        try:
            await batch.done
        except BaseException:
            for request_id in batch.registered:
                pending = self._pending.pop(request_id, None)
                if pending is not None:
                    self._bus.release(pending.sink)
            raise
        for tp, count in batch.counts.items():
            counter = self._records_counters.get(tp)
            if counter is None:
                counter = self._records_counters[tp] = metrics.subscription_records.labels(
                    self.subscription.id, tp.topic, str(tp.partition)
                )
            counter.inc(count)
        for tp, offset in batch.positions.items():
            self._uncommitted[tp] = offset
        self._commit_wanted.set()

    def _target_of(self, resolved: ResolvedHandler) -> EventTarget:
        subscription = self.subscription
        return EventTarget(
            subscription_id=subscription.id,
            group_id=subscription.group_id,
            service=subscription.service,
            handler=subscription.handler,
            service_type=resolved.service_type,
            handler_kind=resolved.kind,
            expects_json=resolved.handler.input.expects_json,
            retention=resolved.retention(self._ingress_settings.retention_defaults, has_idempotency_key=False),
            retry_policy=resolved.retry_policy(self._retry_policy),
            max_record_bytes=self._settings.max_record_bytes,
        )

    def _register(self) -> tuple[IngressSink | None, asyncio.Future[Reply] | None]:
        try:
            return self._bus.register()
        except TooManyWaitingRequests:
            return None, None  # the node's reply bus is full: this invocation is not counted as pending

    def _settled(self, request_id: int, _: object = None) -> None:
        if self._pending.pop(request_id, None) is not None:
            self._pending_gauge.set(len(self._pending))
            if len(self._pending) <= self._resume_at:
                self._room.set()

    def _report(self, record: ConsumerRecord[bytes, bytes], problem: RecordProblem) -> None:
        metrics.subscription_problem_records.labels(self.subscription.id, record.topic, str(record.partition), problem.value).inc()
        action = "delivered anyway (the handler's SDK will fail it)" if problem is RecordProblem.INVALID_JSON else "skipped"
        log.warning(
            "subscription %s: record at %s/%d offset %d: %s, %s",
            self.subscription.id, record.topic, record.partition, record.offset, problem.value, action,
        )  # fmt: skip

    # ------------------------------------------------------------ lost answers

    async def _nudge_forever(self) -> None:
        interval_s = self._settings.pending_nudge_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            await self._nudge(time.monotonic() - interval_s)

    async def _nudge(self, silent_since: float) -> None:
        """Ask again for the outcome of every pending invocation not asked about since `silent_since`."""
        entries: dict[int, list[bytes]] = {}
        now = time.monotonic()
        for pending in list(self._pending.values()):
            if pending.asked_at <= silent_since:
                pending.asked_at = now
                attach = Attach(pending.invocation_id, pending.sink, block=True)
                entries.setdefault(pending.partition, []).append(encode_record(Record(Envelope(_now_ms()), attach)))
        await asyncio.gather(*(self._log.append(partition, share) for partition, share in entries.items()))

    # ------------------------------------------------------------ lag

    async def _refresh_lag_forever(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await asyncio.sleep(self._settings.lag_refresh_interval_ms / 1000)
            await self._refresh_lag(consumer)

    async def _refresh_lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = sorted(consumer.assignment())
        if not assigned:
            return
        try:
            ends = await consumer.end_offsets(assigned)
            for tp in assigned:
                lag = max(0, ends[tp] - await consumer.position(tp))
                metrics.subscription_lag.labels(self.subscription.id, tp.topic, str(tp.partition)).set(lag)
        except KafkaError as error:  # a rebalance took a partition meanwhile, or the brokers did not answer: next time
            log.info("subscription %s: could not read the end offsets for the lag metric: %r", self.subscription.id, error)

    # ------------------------------------------------------------ positions

    async def _commit_forever(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what batches made durable, off the polling loop and at most every `commit_interval_ms` (a commit is a request
        to the group coordinator; committing later only means more records delivered again, and dropped, after a crash)."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            if not await self._commit(consumer):
                self._commit_wanted.set()
            await asyncio.sleep(self._settings.commit_interval_ms / 1000)

    async def _commit(self, consumer: AIOKafkaConsumer) -> bool:
        """Commit the durable positions not committed yet; False if that failed (they are kept for the next try)."""
        async with self._commit_lock:
            positions, self._uncommitted = self._uncommitted, {}
            if not positions:
                return True
            try:
                await consumer.commit(positions)
                return True
            except KafkaError as error:
                assigned = consumer.assignment()
                kept = {tp: offset for tp, offset in positions.items() if tp in assigned}
                for tp, offset in kept.items():
                    self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, offset))
                log.warning(
                    "subscription %s: committing positions %s failed (%r); retrying those still assigned here, the others will"
                    " be delivered again and dropped as duplicates",
                    self.subscription.id, {f"{tp.topic}/{tp.partition}": offset for tp, offset in positions.items()}, error,
                )  # fmt: skip
                return False

    async def _settled_in_time(self) -> bool:
        """Wait (bounded) until the batches in flight are settled; False if that did not happen in time."""
        try:
            await asyncio.wait_for(self._inflight.join(), self._settings.kafka_timeout_ms / 1000)
            return True
        except TimeoutError:
            return False

    async def _stop_helpers(self, consumer: AIOKafkaConsumer, settler: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
        """On the way out: settle what is in flight and commit what is durable (bounded), so that a subscription re-created
        with this group resumes right there; then stop the helpers."""
        if not settler.done() and not await asyncio.shield(self._settled_in_time()):
            log.warning("subscription %s: batches still in flight at stop; they will be delivered again", self.subscription.id)
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        try:
            await asyncio.wait_for(self._commit(consumer), self._settings.kafka_timeout_ms / 1000)
        except (TimeoutError, KafkaError) as error:
            log.warning("subscription %s: the last commit failed (%r); those records will be delivered again", self.subscription.id, error)

    def _forget_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            labels = (self.subscription.id, tp.topic, str(tp.partition))
            try:
                metrics.subscription_lag.remove(*labels)
            except KeyError:
                pass

    def _forget_metrics(self) -> None:
        if self._consumer is not None:
            self._forget_partitions(self._consumer.assignment())
        for gauge in (metrics.subscription_pending, metrics.subscription_paused):
            try:
                gauge.remove(self.subscription.id)
            except KeyError:
                pass


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka's rebalance callbacks, handed to the consumer."""

    def __init__(self, consumer: SubscriptionConsumer, kafka: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._kafka = kafka

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._consumer.partitions_revoked(self._kafka, revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._consumer.partitions_assigned(assigned)
