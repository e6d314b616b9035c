"""A seeded simulation of one partition: the real processor, state machine, invoker, timers and outbox on the in-memory log.

One seed decides everything: the workload (calls to a virtual object and a
service written with duro's SDK, run in-process), the deployment's mode and
protocol version, the retry policy, and the faults of the first phase:
crashes and restarts (memory dropped; the store kept, as RocksDB would, or
lost and rebuilt from the log), leadership moving between two nodes with a
zombie overlap, a log refusing appends for a while (leader tasks die and the
partition is claimed again), stale-epoch and duplicated records, refused, dropped, silent,
stalled, garbled and slow connections, and handlers failing with retryable
errors. A second phase without faults must bring every acknowledged
invocation to its end. Time is virtual (`tests/sim/loop.py`), so a run takes
milliseconds and replays exactly.

Invariants are checked after every step (`_check_safety`) and at the end
(`_check_end`); a violation raises `InvariantViolation` naming the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

import sdk
import sdk._context as sdk_context
from partition_worker import keys
from partition_worker.deployments import CallPolicy, DeploymentEndpoint, HandlerInfo
from partition_worker.invoker import Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.settings import InvokerSettings, ProcessorSettings
from partition_worker.state_machine import StateMachine, StateMachineConfig, counts
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import MemoryPartitionStore, Transaction
from protocol.frames import Frame, decode_message, is_notification
from protocol.ids import InvocationId
from protocol.retention import InvocationRetention
from protocol.routing import partition_key_for_key
from tests.sim.deployment import ExchangeFault, Fault, SimulatedDeployment
from tests.sim.loop import VirtualTimeLoop
from tests.sim.services import SERVICES, AttemptInfo
from wal.log import LogError
from wal.memory import MemoryLog
from wal.records import (
    AnnounceLeader,
    AttemptEvents,
    AttemptFailed,
    Cancel,
    Envelope,
    HandlerKind,
    IngressSink,
    Invoke,
    OnMaxAttempts,
    Record,
    RecordBody,
    Resume,
    RetryPolicy,
    ServiceType,
    Target,
    TimerFired,
    TimerKind,
    decode_record,
    encode_record,
)
from wal.replies import Reply

EPOCH_MS = 1_700_000_000_000
PARTITION = 0
RETENTION_MS = 3_600_000
SAFETY_PHASE_S = 8.0
LIVENESS_PHASE_S = 600.0
CHECK_INTERVAL_S = 0.5
DEPLOYMENT_ID = "dp_sim"
HANDLERS = {
    ("SimCounter", "append"): HandlerInfo(ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE),
    ("SimCounter", "items"): HandlerInfo(ServiceType.VIRTUAL_OBJECT, HandlerKind.SHARED),
    ("SimWorker", "work"): HandlerInfo(ServiceType.SERVICE, None),
}


class InvariantViolation(AssertionError):
    """The simulation found a state the design forbids."""


@dataclass(frozen=True, slots=True)
class Planned:
    """One invocation the workload submits (as the ingress would)."""

    invocation_id: str
    target: Target
    argument: Any
    submit_at_s: float


@dataclass(slots=True)
class Report:
    seed: int
    digest: str = ""  # of every log entry: two runs of one seed give the same
    records: int = 0
    invocations: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    virtual_s: float = 0.0


class SimDirectory:
    """The registry as the invoker sees it: one deployment serving the simulated services."""

    def __init__(self, endpoint: DeploymentEndpoint, policy: RetryPolicy) -> None:
        self._endpoint = endpoint
        self._policy = policy

    def deployment(self, deployment_id: str) -> DeploymentEndpoint | None:
        return self._endpoint if deployment_id == DEPLOYMENT_ID else None

    def latest_deployment_for(self, service: str) -> DeploymentEndpoint | None:
        return self._endpoint

    def handler_info(self, service: str, handler: str) -> HandlerInfo | None:
        return HANDLERS.get((service, handler))

    def call_policy(self, service: str, handler: str, has_idempotency_key: bool) -> CallPolicy | None:
        return CallPolicy(self._policy, InvocationRetention(RETENTION_MS, 0)) if (service, handler) in HANDLERS else None


class FlakyLog(MemoryLog):
    """The in-memory log, refusing appends while an outage lasts (as Kafka does when its brokers are down past the append timeout)."""

    def __init__(self, partition_count: int, now: Callable[[], float]) -> None:
        super().__init__(partition_count)
        self._now = now
        self.outage_until = 0.0

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        if self._now() < self.outage_until:
            await asyncio.sleep(0.05)  # the append waits, then times out
            raise LogError("the log refused the append (a simulated outage)")
        return await super().append(partition, entries)


class SimNode:
    """One node's share of the partition: its store (which survives a crash unless lost), invoker and processor."""

    def __init__(self, sim: Simulation, node_id: int) -> None:
        self.sim = sim
        self.node_id = node_id
        self.store = MemoryPartitionStore()
        self.invoker: Invoker | None = None
        self.processor: PartitionProcessor | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        assert not self.running, f"node {self.node_id} already runs"
        sim = self.sim
        self.invoker = Invoker(sim.directory, sim.invoker_settings, sim.now_ms, transport=sim.deployment)
        self.processor = PartitionProcessor(
            PARTITION,
            self.node_id,
            sim.log,
            self.store,
            StateMachine(StateMachineConfig(PARTITION)),
            self.invoker,
            sim.deliver_reply,
            sim.processor_settings,
            sim.now_ms,
        )
        self.task = asyncio.get_running_loop().create_task(self.processor.run(), name=f"node {self.node_id}")
        self.task.add_done_callback(sim.watch_processor)

    async def crash(self, lose_store: bool) -> None:
        """Stop at once, recording nothing: attempts are dropped, memory is gone (and the store too if `lose_store`)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.invoker is not None:
            self.invoker.abort_partition(PARTITION)
            await asyncio.sleep(0)
        self.task = self.processor = self.invoker = None
        if lose_store:
            self.store = MemoryPartitionStore()


class Simulation:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.report = Report(seed)
        rng = self.rng
        self.loop: asyncio.AbstractEventLoop | None = None
        self.log = FlakyLog(1, lambda: self.loop.time() if self.loop is not None else 0.0)
        self.bidirectional = rng.random() < 0.7
        self.policy = RetryPolicy(
            initial_interval_ms=rng.choice([20, 100, 250]),
            factor=2.0,
            max_interval_ms=rng.choice([500, 2_000]),
            max_attempts=rng.choice([None, 6, 12, 30]),
            on_max_attempts=rng.choice([OnMaxAttempts.PAUSE, OnMaxAttempts.KILL]),
        )
        self.invoker_settings = InvokerSettings(
            max_protocol_version=rng.choice([5, 6, 7]),
            inactivity_timeout_ms=1_000,
            abort_timeout_ms=1_000,
            response_header_timeout_ms=500,
        )
        self.processor_settings = ProcessorSettings(
            running_check_interval_ms=1_000, leader_task_restart_initial_backoff_ms=50, leader_task_restart_max_backoff_ms=1_000
        )
        endpoint = DeploymentEndpoint(DEPLOYMENT_ID, "http://sim", bidirectional=self.bidirectional)
        self.directory = SimDirectory(endpoint, self.policy)
        app = sdk.app(SERVICES, protocol="bidi" if self.bidirectional else "request_response")
        self.deployment = SimulatedDeployment(app, self, self._exchange_fault)
        self.nodes = {1: SimNode(self, 1), 2: SimNode(self, 2)}
        self.owner = 1
        self.faults_on = True
        self.fault_rate = rng.choice([0.0, 0.05, 0.15, 0.3])
        self.planned = self._plan()
        self.acknowledged: dict[str, Planned] = {}
        self.replies: list[tuple[IngressSink, Reply]] = []
        self.processor_failure: BaseException | None = None
        self._append_order: dict[str, list[int]] = {}  # SimCounter items per key, in the order their Invokes are in the log
        self._order_scanned = 0
        self._decoded: list[tuple[bytes, Record]] = []

    # ------------------------------------------------------------ the seed's choices

    def _plan(self) -> list[Planned]:
        rng = self.rng
        planned: list[Planned] = []
        items = iter(range(1, 1_000))
        for _ in range(rng.randint(2, 9)):
            at_s = rng.uniform(0.0, 3.0)
            if rng.random() < 0.55:
                key = rng.choice(["a", "b"])
                target = Target("SimCounter", "append", key, ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
                invocation_id = str(InvocationId(partition_key_for_key(key), rng.randbytes(16)))
                planned.append(Planned(invocation_id, target, next(items), at_s))
            else:
                target = Target("SimWorker", "work", None, ServiceType.SERVICE, None)
                job: dict[str, Any] = {"steps": rng.randint(0, 3), "sleep_ms": rng.randint(5, 800)}
                if rng.random() < 0.4:
                    job.update(call_key=rng.choice(["a", "b"]), item=next(items))
                job["terminal"] = rng.random() < 0.1
                invocation_id = str(InvocationId(rng.getrandbits(64), rng.randbytes(16)))
                planned.append(Planned(invocation_id, target, job, at_s))
        return sorted(planned, key=lambda p: p.submit_at_s)

    def handler_fault(self, info: AttemptInfo, site: str) -> bool:
        if not self.faults_on:
            return False
        return _chance(self.seed, "handler", info.invocation_id, info.attempt, site) < self.fault_rate / 3

    def _exchange_fault(self, invocation_id: str, attempt: int) -> ExchangeFault:
        if not self.faults_on:
            return ExchangeFault()
        draw = _chance(self.seed, "exchange", invocation_id, attempt)
        if draw >= self.fault_rate:
            return ExchangeFault()
        kind = [Fault.REFUSE, Fault.DROP, Fault.SILENT, Fault.STALL, Fault.GARBAGE, Fault.SLOW][int(draw * 1e6) % 6]
        after = int(draw * 1e4) % 4
        self._count(f"exchange {kind.value}")
        return ExchangeFault(kind, after_chunks=after, delay_ms=int(draw * 1e5) % 300)

    def now_ms(self) -> int:
        loop = self.loop
        assert loop is not None, "the clock runs with the simulation"
        return EPOCH_MS + int(loop.time() * 1000)

    def deliver_reply(self, sink: IngressSink, reply: Reply) -> None:
        self.replies.append((sink, reply))

    def watch_processor(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.processor_failure = task.exception()

    def _count(self, what: str) -> None:
        self.report.faults[what] = self.report.faults.get(what, 0) + 1

    # ------------------------------------------------------------ the run

    def run(self) -> Report:
        loop = VirtualTimeLoop()
        self.loop = loop
        real_now_ms = sdk_context._now_ms
        sdk_context._now_ms = self.now_ms  # the SDK's wall clock is the simulation's (ctx.sleep computes wake-up times with it)
        try:
            loop.run_until_complete(self._main())
        except InvariantViolation:
            raise
        except BaseException as error:
            raise InvariantViolation(f"seed {self.seed}: the simulation failed: {error!r}") from error
        finally:
            sdk_context._now_ms = real_now_ms
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._close())
            loop.close()
        return self.report

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self.nodes[self.owner].start()
        driver = loop.create_task(self._submit_workload(), name="workload")
        faults = loop.create_task(self._inject_faults(), name="faults")
        await asyncio.sleep(0)
        while loop.time() < SAFETY_PHASE_S:
            await asyncio.sleep(CHECK_INTERVAL_S)
            self._check_safety("periodic")
        await driver
        faults.cancel()
        await asyncio.gather(faults, return_exceptions=True)
        await self._settle_leadership()
        self.faults_on = False
        self.log.outage_until = 0.0
        await self._liveness()
        self._check_end()
        entries = self.log._partitions[PARTITION]
        self.report.records = len(entries)
        self.report.invocations = len(self.acknowledged)
        self.report.digest = hashlib.sha256(b"".join(hashlib.sha256(e).digest() for e in entries)).hexdigest()
        self.report.virtual_s = loop.time()

    async def _close(self) -> None:
        for node in self.nodes.values():
            await node.crash(lose_store=False)
        await self.deployment.close()
        await self.log.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0)

    async def _submit_workload(self) -> None:
        loop = asyncio.get_running_loop()
        for request_id, planned in enumerate(self.planned):
            await asyncio.sleep(max(0.0, planned.submit_at_s - loop.time()))
            body = json.dumps(planned.argument).encode()
            invoke = Invoke(
                planned.invocation_id,
                planned.target,
                body,
                response_sink=IngressSink(99, request_id),
                completion_retention_ms=RETENTION_MS,
                retry_policy=self.policy,
            )
            while True:
                try:
                    await self._append(invoke)
                    break
                except LogError:
                    await asyncio.sleep(0.2)  # refused: not acknowledged; the client tries again
            self.acknowledged[planned.invocation_id] = planned  # durable: the ingress would now answer
            self._check_safety(f"submitted {planned.invocation_id}")
            if self.rng.random() < 0.1:
                with contextlib.suppress(LogError):
                    await self._append(invoke)  # a client's retry: the same id again
                    self._count("duplicate invoke")

    async def _append(self, body: RecordBody, epoch: int = 0) -> int:
        return await self.log.append(PARTITION, [encode_record(Record(Envelope(self.now_ms(), epoch), body))])

    async def _inject_faults(self) -> None:
        rng = self.rng
        if self.fault_rate == 0.0:
            return
        while True:
            await asyncio.sleep(rng.expovariate(1.0 / (0.3 / self.fault_rate)))
            choice = rng.random()
            if choice < 0.2:
                await self._crash_and_restart()
            elif choice < 0.35:
                await self._move_leadership()
            elif choice < 0.6:
                await self._append_stale_or_duplicate()
            elif choice < 0.7:
                await self._operator_command()
            elif choice < 0.8:
                self._count("log outage")
                self.log.outage_until = asyncio.get_running_loop().time() + rng.uniform(0.1, 1.5)
            self._check_safety(f"after fault {dict(self.report.faults)}")

    async def _crash_and_restart(self) -> None:
        node = self.nodes[self.owner]
        lose_store = self.rng.random() < 0.3
        self._count("crash (store lost)" if lose_store else "crash")
        await node.crash(lose_store)
        await asyncio.sleep(self.rng.uniform(0.0, 1.5))
        node.start()

    async def _move_leadership(self) -> None:
        """The other node takes the partition; the old owner runs on as a zombie for a while, then stops."""
        old, new = self.nodes[self.owner], self.nodes[3 - self.owner]
        self._count("leadership moved")
        self.owner = new.node_id
        if not new.running:
            new.start()
        await asyncio.sleep(self.rng.uniform(0.0, 2.0))  # below the reannounce delay: the zombie never claims it back
        await old.crash(lose_store=self.rng.random() < 0.2)

    async def _append_stale_or_duplicate(self) -> None:
        """Append a copy of an earlier record: one a leader of an older epoch wrote, or a kind a real log may duplicate."""
        records = self._records()
        if not records:
            return
        epoch = max(record.envelope.leader_epoch for _, record in records)
        candidates = []
        for entry, record in records:
            envelope, body = record.envelope, record.body
            if 0 < envelope.leader_epoch < epoch:
                candidates.append(("stale record", entry))  # fenced: must change nothing
            elif isinstance(body, TimerFired | AnnounceLeader) or envelope.dedup is not None:
                candidates.append(("duplicate record", entry))  # timers fire twice, outbox messages arrive twice
            elif isinstance(body, AttemptEvents | AttemptFailed) and self._attempt_over(body.invocation_id, body.attempt):
                candidates.append(("late attempt record", entry))  # an ended attempt's record arriving again
        if candidates:
            what, entry = self.rng.choice(candidates)
            with contextlib.suppress(LogError):
                await self.log.append(PARTITION, [entry])
                self._count(what)

    def _records(self) -> list[tuple[bytes, Record]]:
        """The log's entries with their records, decoded once each."""
        entries = self.log._partitions[PARTITION]
        for entry in entries[len(self._decoded) :]:
            self._decoded.append((entry, decode_record(entry)))
        return self._decoded

    def _attempt_over(self, invocation_id: str, attempt: int) -> bool:
        status = _status(self.nodes[self.owner].store, invocation_id)
        return status is None or status.attempt > attempt or status.phase is not Phase.INVOKED

    async def _operator_command(self) -> None:
        if not self.acknowledged:
            return
        invocation_id = self.rng.choice(sorted(self.acknowledged))
        command: RecordBody = Cancel(invocation_id) if self.rng.random() < 0.5 else Resume(invocation_id)
        with contextlib.suppress(LogError):
            await self._append(command)
            self._count(type(command).__name__.lower())

    async def _settle_leadership(self) -> None:
        """End the fault phase with one node owning and leading the partition."""
        for node in self.nodes.values():
            if node.node_id != self.owner and node.running:
                await node.crash(lose_store=False)
        owner = self.nodes[self.owner]
        if not owner.running:
            owner.start()

    async def _liveness(self) -> None:
        """Without faults, every acknowledged invocation ends (paused ones are resumed once)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIVENESS_PHASE_S
        resumed: set[str] = set()
        while loop.time() < deadline:
            await asyncio.sleep(CHECK_INTERVAL_S)
            self._check_safety("liveness")
            store = self.nodes[self.owner].store
            pending = [i for i in self.acknowledged if (s := _status(store, i)) is None or not s.is_completed]
            for invocation_id in pending:
                status = _status(store, invocation_id)
                if status is not None and status.phase is Phase.PAUSED and invocation_id not in resumed:
                    resumed.add(invocation_id)
                    await self._append(Resume(invocation_id))  # no outage once the faults stopped
            if not pending and await self._caught_up():
                return
        store = self.nodes[self.owner].store
        stuck = {i: _describe(_status(store, i)) for i in self.acknowledged if not (_status(store, i) or _EMPTY).is_completed}
        raise InvariantViolation(f"seed {self.seed}: {len(stuck)} acknowledged invocations never ended: {stuck}")

    async def _caught_up(self) -> bool:
        processor = self.nodes[self.owner].processor
        return processor is not None and processor.applied_offset + 1 == await self.log.end_offset(PARTITION)

    # ------------------------------------------------------------ invariants

    def _fail(self, step: str, message: str) -> None:
        raise InvariantViolation(f"seed {self.seed}, {step}, at {self.now_ms() - EPOCH_MS} ms: {message}")

    def _check_safety(self, step: str) -> None:
        if self.processor_failure is not None:
            self._fail(step, f"a processor died: {self.processor_failure!r}")
        for node in self.nodes.values():
            if node.running:  # a stopped node's store does not change
                self._check_store(step, node.store)
                self._check_attempts(step, node)
        self._check_inbox_order(step, self.nodes[self.owner].store, final=False)

    def _check_store(self, step: str, store: MemoryPartitionStore) -> None:
        """Statuses agree with locks, inboxes, timers and the running index; journals hold each completion once; the row counts are exact."""
        stored, scanned = counts.read(store), counts.scan(store)
        if stored is not None and stored != scanned:
            self._fail(step, f"the counts apply keeps say {stored}, the rows say {scanned}")
        if stored is None and store.rows:
            self._fail(step, "a store with rows has no counts")
        running_count, running_rows = store.get(keys.RUNNING_COUNT), sum(1 for _ in store.scan(keys.RUNNING_PREFIX))
        if running_count is not None and keys.decode_u64(running_count) != running_rows:
            self._fail(step, f"the running count says {keys.decode_u64(running_count)}, the running index holds {running_rows}")
        holders: dict[tuple[str, str], list[str]] = {}
        for row, raw in store.scan(keys.INVOCATION_PREFIX):
            invocation_id = keys.invocation_id_of(row)
            status = InvocationStatus.decode(raw)
            target, phase = status.target, status.phase
            if target.takes_lock and target.key is not None and phase in _HOLDS_LOCK:
                holders.setdefault((target.service, target.key), []).append(invocation_id)
            policy = status.retry_policy
            if policy is not None and policy.max_attempts is not None and status.retry_count > policy.max_attempts:
                self._fail(step, f"{invocation_id} failed {status.retry_count} times, more than its policy's {policy.max_attempts}")
            if phase is Phase.BACKING_OFF:
                assert status.next_retry_at_ms is not None
                if store.get(keys.timer_key(status.next_retry_at_ms, invocation_id, int(TimerKind.RETRY), status.attempt)) is None:
                    self._fail(step, f"{invocation_id} backs off without a retry timer")
            if phase is Phase.INBOXED and (
                status.inbox_seq is None or store.get(keys.inbox_key(target.service, target.key or "", status.inbox_seq)) is None
            ):
                self._fail(step, f"{invocation_id} is inboxed but not in its key's inbox")
            if (phase is Phase.INVOKED) != (store.get(keys.running_key(invocation_id)) is not None):
                self._fail(step, f"{invocation_id} is {phase.name} but the running index says otherwise")
            for fire_at_ms, completion_id in status.pending_sleeps:
                if store.get(keys.timer_key(fire_at_ms, invocation_id, int(TimerKind.SLEEP), completion_id)) is None:
                    self._fail(step, f"{invocation_id} waits on sleep {completion_id} without its timer")
            if phase is Phase.COMPLETED and status.outcome is None:
                self._fail(step, f"{invocation_id} completed without an outcome")
            self._check_journal(step, store, invocation_id)
        for (service, key), ids in holders.items():
            if len(ids) > 1:
                self._fail(step, f"{len(ids)} exclusive invocations hold {service}/{key} at once: {ids}")
            lock = store.get(keys.lock_key(service, key))
            if lock is None or lock.decode() != ids[0]:
                self._fail(step, f"{ids[0]} holds {service}/{key} but the lock names {lock!r}")

    def _check_journal(self, step: str, store: MemoryPartitionStore, invocation_id: str) -> None:
        seen: set[tuple[int, int]] = set()
        for _, raw in store.scan(keys.journal_prefix(invocation_id)):
            message_type, payload = msgpack.unpackb(raw)
            if not is_notification(message_type):
                continue
            completion_id = getattr(decode_message(Frame(message_type, 0, payload)), "completion_id", None)
            if completion_id is None or message_type == 0x8000:
                continue
            if (message_type, completion_id) in seen:
                self._fail(step, f"{invocation_id}'s journal holds completion {completion_id} (type {message_type:#06x}) twice")
            seen.add((message_type, completion_id))

    def _check_attempts(self, step: str, node: SimNode) -> None:
        """No invocation is running without a live attempt (or its end recorded, not yet applied) at a working leader."""
        processor, invoker = node.processor, node.invoker
        if processor is None or invoker is None or not node.running or not processor.has_working_leader:
            return
        for row, _ in node.store.scan(keys.RUNNING_PREFIX):
            invocation_id = keys.running_id_of(row)
            status = _status(node.store, invocation_id)
            assert status is not None
            if not invoker.accounts_for(PARTITION, invocation_id, status.attempt, processor.applied_offset):
                self._fail(step, f"node {node.node_id} leads, yet {invocation_id}#{status.attempt} runs without a live attempt")

    def _check_inbox_order(self, step: str, store: MemoryPartitionStore, final: bool) -> None:
        """Each key's list holds its appends in log order, each once; at the end, every append that succeeded is in it."""
        records = self._records()
        for _, record in records[self._order_scanned :]:
            body = record.body
            if isinstance(body, Invoke) and body.target.service == "SimCounter" and body.target.handler == "append":
                item = json.loads(body.body)
                listed = self._append_order.setdefault(body.target.key or "", [])
                if item not in listed:
                    listed.append(item)
        self._order_scanned = len(records)
        for key, logged in self._append_order.items():
            raw = store.get(keys.state_key("SimCounter", key, b"items"))
            found: list[int] = json.loads(raw) if raw is not None else []
            if len(set(found)) != len(found):
                self._fail(step, f"SimCounter/{key} appended an item twice: {found}")
            if found != [item for item in logged if item in set(found)]:
                self._fail(step, f"SimCounter/{key} appended {found}, not in the log's order {logged}")

    def _check_end(self) -> None:
        step = "end"
        owner = self.nodes[self.owner]
        store = owner.store
        self._check_inbox_order(step, store, final=True)
        for invocation_id, planned in self.acknowledged.items():
            status = _status(store, invocation_id)
            if status is None or status.outcome is None:
                self._fail(step, f"acknowledged {invocation_id} has no outcome: {_describe(status)}")
            value = status.outcome.value
            if planned.target.handler == "append" and value is not None:
                items = json.loads(value)
                final_raw = store.get(keys.state_key("SimCounter", planned.target.key or "", b"items"))
                if planned.argument not in items or planned.argument not in json.loads(final_raw or b"[]"):
                    self._fail(step, f"append of {planned.argument} succeeded but the list lacks it")
            if planned.target.handler == "work" and value is not None:
                result = json.loads(value)
                if result["woke"] < result["wake_at"]:
                    self._fail(step, f"{invocation_id} woke at {result['woke']}, before its sleep was due at {result['wake_at']}")
        for row, _ in store.scan(keys.TIMER_PREFIX):
            fire_at_ms, invocation_id, timer_kind, _ = keys.parse_timer_key(row)
            status = _status(store, invocation_id)
            if timer_kind != TimerKind.CLEANUP or status is None or status.expires_at_ms != fire_at_ms:
                self._fail(step, f"a {TimerKind(timer_kind).name} timer of {invocation_id} is left over: {_describe(status)}")
        for prefix, what in ((keys.OUTBOX_PREFIX, "outbox"), (bytes([keys.Table.INBOX]), "inbox"), (bytes([keys.Table.LOCK]), "lock")):
            left = list(store.scan(prefix))
            if left:
                self._fail(step, f"{len(left)} {what} rows are left over")
        replayed = _replay(self.log._partitions[PARTITION][: owner.processor.applied_offset + 1] if owner.processor else [])
        if replayed != store.rows:
            differ = sorted(set(replayed.items()) ^ set(store.rows.items()))[:5]
            self._fail(step, f"replaying the log gives other rows than the leader's store: {differ}")


_HOLDS_LOCK = frozenset({Phase.INVOKED, Phase.SUSPENDED, Phase.BACKING_OFF, Phase.PAUSED})
_EMPTY = InvocationStatus(Phase.SCHEDULED, Target("", "", None, ServiceType.SERVICE, None), 0, 0)


def _status(store: MemoryPartitionStore, invocation_id: str) -> InvocationStatus | None:
    raw = store.get(keys.invocation_key(invocation_id))
    return InvocationStatus.decode(raw) if raw is not None else None


def _describe(status: InvocationStatus | None) -> str:
    if status is None:
        return "no status"
    failure = status.last_failure.message if status.last_failure else None
    return f"{status.phase.name} attempt {status.attempt} retries {status.retry_count} last failure {failure!r}"


def _replay(entries: list[bytes]) -> dict[bytes, bytes]:
    """The rows a fresh state machine leaves after applying `entries` (in one transaction: batching changes no row)."""
    store = MemoryPartitionStore()
    counts.build(store)  # what a processor does to a store that has applied nothing, before applying
    machine = StateMachine(StateMachineConfig(PARTITION))
    txn = Transaction(store)
    for entry in entries:
        machine.apply(txn, decode_record(entry))
    if entries:
        txn.put(keys.APPLIED_OFFSET, keys.encode_u64(len(entries) - 1))
    txn.commit()
    return store.rows


def _chance(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by the seed and `parts`: a fault decision that does not depend on the order of events."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def run_seed(seed: int) -> Report:
    """Run one seed; raises InvariantViolation naming the seed if an invariant breaks."""
    return Simulation(seed).run()


def replay_command(seed: int) -> str:
    return f"python -m tests.sim --seed {seed} --verbose"


__all__ = ["InvariantViolation", "Report", "Simulation", "replay_command", "run_seed"]
