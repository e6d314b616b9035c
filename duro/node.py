"""One duro node in one process: the embedded log, RocksDB, the partition processors, the ingress and the admin API.

`run_node` owns the process lifetime: it refuses a data dir in use or created
with another partition count, serves until SIGINT/SIGTERM, drains (`duro/drain.py`:
new requests refused, attempts ended or suspended, partitions handed over,
waiting requests answered, all within `shutdown.timeout_ms`), then stops the
servers, the processors and the invoker, and closes the log and the store. A
component that dies stops the node at once, without draining, and the process
exits non-zero (`NodeFailure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator

import pyarrow as pa
import uvicorn
from starlette.types import ASGIApp

from duro.cluster import ReplyRouter, announce_node
from duro.directory import RegistryDirectory
from duro.drain import DrainParts, DrainReport, describe, drain
from duro.inspect import partition_tables
from duro.logs import configure_logging
from duro.settings import DuroSettings
from duro.telemetry import Telemetry
from ingress.admin import PartitionTables, build_admin_app
from ingress.http import build_ingress_app
from ingress.kafka_inspect import KafkaInspector
from ingress.registry import FileRegistryStore, Registry, RegistryError, SharedRegistryStore
from ingress.settings import ServiceDefaults
from ingress.subscription_admin import SubscriptionAdmin
from ingress.subscription_consumer import SubscriptionConsumer
from ingress.subscription_controller import SubscriptionController
from ingress.subscriptions import FileKeyValues, KafkaCluster, KeyValueStore, Subscription, SubscriptionRegistry, static_clusters
from partition_worker.gauges import GaugeSampler, GaugeSettings, SampledPartition
from partition_worker.invoker import Invoker
from partition_worker.processor import StateAheadOfLogError, applied_offset_of, check_state_within_log
from partition_worker.state_machine import StateMachineConfig
from partition_worker.store import RocksDatabase
from partition_worker.worker import PartitionWorker
from wal.embedded import EmbeddedLog
from wal.kafka import KafkaLog
from wal.kafka_membership import KafkaMembership, MembershipSettings
from wal.kafka_metadata import KafkaMetadata
from wal.kafka_settings import KafkaLogSettings
from wal.log import Log, LogError
from wal.replies import ReplyBus

log = logging.getLogger("duro.node")

NODE_FILE = "duro.json"


class NodeStartError(Exception):
    """The node cannot start; the message says why and what to change."""


class NodeFailure(Exception):
    """A component of the running node died; the node stopped without draining."""


def run_node(settings: DuroSettings) -> None:
    configure_logging(settings.log_level, settings.log_format, settings.node_id)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.Runner()
    with runner:
        runner.run(Node(settings).serve())


def check_data_dir(settings: DuroSettings) -> None:
    """Create the data dir, or check that it was created with the same partition count."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    node_file = data_dir / NODE_FILE
    if not node_file.exists():
        node_file.write_text(json.dumps({"partitions": settings.partitions}))
        return
    stored = json.loads(node_file.read_text())
    if stored.get("partitions") != settings.partitions:
        raise NodeStartError(
            f"data dir {data_dir} was created with --partitions {stored.get('partitions')}, not {settings.partitions};"
            " the partition count is fixed when the data dir is created: use the same value or a new --data-dir"
        )


class Node:
    def __init__(self, settings: DuroSettings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._failure: BaseException | None = None
        self._leave_cluster: Callable[[], Awaitable[None]] | None = None

    async def serve(self) -> None:
        settings = self.settings
        check_data_dir(settings)
        async with contextlib.AsyncExitStack() as stack:
            wal, metadata = await self._open_log(stack)
            database = RocksDatabase(str(settings.data_dir / "state"))
            stack.callback(database.close)
            if metadata is None:
                await _check_state_within_log(wal, database, settings)
            registry = Registry(SharedRegistryStore(metadata) if metadata else FileRegistryStore(settings.data_dir))
            await registry.load()
            if metadata is not None:
                metadata.watch(lambda key, value: registry.install_document(value) if key == SharedRegistryStore.KEY and value else None)
            reply_bus = ReplyBus(settings.node_id, settings.max_waiting_requests)
            router = ReplyRouter(reply_bus, metadata)
            stack.push_async_callback(router.close)
            retry_policy = settings.retry.policy()
            telemetry = Telemetry(settings.tracing, settings.node_id)
            stack.push_async_callback(asyncio.to_thread, telemetry.close)  # flushes queued spans: blocking, bounded by its timeout
            invoker = Invoker(
                RegistryDirectory(registry, settings.ingress, retry_policy), settings.invoker, tracer=telemetry.tracer("duro.invoker")
            )
            stack.push_async_callback(invoker.close)
            worker = PartitionWorker(
                settings.node_id,
                wal,
                database,
                invoker,
                router.deliver,
                self._state_machine_config,
                settings.processor,
                self._fail,
            )
            stack.push_async_callback(worker.close)
            sampler = GaugeSampler(
                wal,
                lambda: [SampledPartition(p, processor.applied_offset, processor.store) for p, processor in worker.processors.items()],
                settings.data_dir / "state",
                GaugeSettings(settings.metrics_sample_interval_ms, settings.metrics_max_scan_rows),
            )
            sampling = asyncio.create_task(sampler.run(), name="gauge sampler")
            sampling.add_done_callback(self._fail_unless_cancelled)
            stack.callback(sampling.cancel)
            ingress_app = build_ingress_app(wal, registry, reply_bus, settings.ingress, retry_policy, telemetry.tracer("duro.ingress"))
            service_defaults = ServiceDefaults(retry_policy, settings.invoker.inactivity_timeout_ms, settings.invoker.abort_timeout_ms)
            subscriptions = await self._subscriptions(metadata, registry)
            subscription_admin = SubscriptionAdmin(subscriptions, KafkaInspector(settings.subscriptions.kafka_timeout_ms))
            admin_app = build_admin_app(
                wal,
                registry,
                reply_bus,
                settings.ingress,
                partition_tables=_local_tables(worker),
                service_defaults=service_defaults,
                extra_routes=subscription_admin.routes(),
            )
            servers = await self._serve_http(stack, ingress_app, admin_app)
            if metadata is None:
                worker.assign(set(range(settings.partitions)))
                await worker.wait_leading()
            else:
                await announce_node(metadata, settings.node_id, settings.admin_url, settings.ingress_url)
                await self._join_cluster(stack, worker)
            controller = self._consume_subscriptions(stack, subscriptions, registry, wal, reply_bus)
            log.info(
                "duro node %d ready: ingress %s admin %s, %d partitions on the %s log, data in %s",
                settings.node_id, settings.ingress_url, settings.admin_url, settings.partitions, settings.log, settings.data_dir,
            )  # fmt: skip
            await self._stop.wait()
            if self._failure is not None:
                raise NodeFailure(f"node {settings.node_id} stopped because a component failed: {self._failure!r}") from self._failure
            log.info("duro node %d stopping: draining for at most %d ms", settings.node_id, settings.shutdown.timeout_ms)
            parts = DrainParts(settings.node_id, ingress_app.ingress, invoker, worker, reply_bus, self._leave_cluster, controller.close)
            deadline = await self._drain(parts)
            for server in servers:  # what is still open gets what is left of the graceful phase, at least a second
                server.config.timeout_graceful_shutdown = max(1, round(deadline - time.monotonic()))

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._stop.set()
        self._force.set()

    def _fail_unless_cancelled(self, task: asyncio.Task[None]) -> None:
        """A done-callback for the node's background tasks: their death stops the node."""
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.critical("%s died: %r", task.get_name(), error, exc_info=error)
            self._fail(error)

    def _signal(self) -> None:
        """The first SIGINT/SIGTERM starts the graceful stop; a second one cuts it short."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def _drain(self, parts: DrainParts) -> float:
        """Run the graceful phase, bounded by `shutdown.timeout_ms` and a second signal; returns its deadline."""
        shutdown = self.settings.shutdown
        started = time.monotonic()
        deadline = started + shutdown.timeout_ms / 1000
        report = DrainReport()
        draining = asyncio.create_task(drain(parts, deadline, shutdown.attempt_drain_timeout_ms / 1000, report), name="drain")
        forced = asyncio.create_task(self._force.wait())
        await asyncio.wait([draining, forced], timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        completed = draining.done() and not draining.cancelled() and draining.exception() is None
        if not draining.done():
            draining.cancel()
        results = await asyncio.gather(draining, return_exceptions=True)
        if isinstance(results[0], Exception):
            log.error("draining failed: %r", results[0])
        log.info("duro node %d %s", self.settings.node_id, describe(report, time.monotonic() - started, completed))
        return deadline

    async def _subscriptions(self, metadata: KafkaMetadata | None, registry: Registry) -> SubscriptionRegistry:
        """The subscriptions and Kafka clusters: in the metadata topic on Kafka (shared by every node), else in the data dir."""
        settings = self.settings
        store: KeyValueStore
        if metadata is not None:
            store = metadata
        else:
            local = FileKeyValues(settings.data_dir)
            await local.load()
            store = local
        try:
            configured = static_clusters([(c.name, c.brokers, c.properties) for c in settings.ingress.kafka_clusters])
        except RegistryError as error:
            raise NodeStartError(f"ingress.kafka_clusters: {error.message}") from None
        inspector = KafkaInspector(settings.subscriptions.kafka_timeout_ms)
        return SubscriptionRegistry(store, registry, configured, inspector.check_topic)

    def _consume_subscriptions(
        self, stack: contextlib.AsyncExitStack, subscriptions: SubscriptionRegistry, registry: Registry, wal: Log, reply_bus: ReplyBus
    ) -> SubscriptionController:
        """Run this node's consumer of every subscription (the subscription's consumer group shares the topic between nodes)."""
        settings = self.settings
        retry_policy = settings.retry.policy()

        def consumer(subscription: Subscription, cluster: KafkaCluster) -> SubscriptionConsumer:
            return SubscriptionConsumer(
                subscription, cluster, registry, wal, reply_bus, settings.subscriptions, settings.ingress, retry_policy, settings.node_id
            )

        controller = SubscriptionController(subscriptions, consumer, settings.subscriptions)
        controller.start()
        stack.push_async_callback(controller.close)
        return controller

    async def _open_log(self, stack: contextlib.AsyncExitStack) -> tuple[Log, KafkaMetadata | None]:
        settings = self.settings
        try:
            if settings.log == "embedded":
                embedded = await EmbeddedLog.open(
                    settings.data_dir / "log", settings.partitions, truncate_corrupt_tail=settings.truncate_corrupt_tail
                )
                stack.push_async_callback(embedded.close)
                return embedded, None
            if not settings.kafka_bootstrap:
                raise NodeStartError("--log kafka needs --kafka-bootstrap HOST:PORT (or DURO_KAFKA_BOOTSTRAP)")
            kafka_settings = KafkaLogSettings(
                replication_factor=settings.kafka_replication_factor, connect_timeout_ms=settings.kafka_connect_timeout_ms
            )
            kafka = await KafkaLog.open(settings.kafka_bootstrap, settings.kafka_topic, settings.partitions, kafka_settings)
            stack.push_async_callback(kafka.close)
            metadata = KafkaMetadata(settings.kafka_bootstrap, settings.kafka_metadata_topic, settings.kafka_replication_factor)
            await metadata.open()
            stack.push_async_callback(metadata.close)
            return kafka, metadata
        except LogError as exc:
            raise NodeStartError(str(exc)) from exc

    async def _serve_http(self, stack: contextlib.AsyncExitStack, ingress_app: ASGIApp, admin_app: ASGIApp) -> list[uvicorn.Server]:
        settings = self.settings
        servers = [
            _ServerWithoutSignals(
                uvicorn.Config(app, host=settings.bind, port=port, log_level="warning", lifespan="off", access_log=False, log_config=None)
            )
            for app, port in ((ingress_app, settings.ingress_port), (admin_app, settings.admin_port))
        ]
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._signal)
        tasks = [asyncio.create_task(server.serve()) for server in servers]

        async def stop_servers() -> None:
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)

        stack.push_async_callback(stop_servers)
        return list(servers)

    async def _join_cluster(self, stack: contextlib.AsyncExitStack, worker: PartitionWorker) -> None:
        """Join the consumer group that assigns partitions; processors start and stop with the assignment."""
        settings = self.settings
        assert settings.kafka_bootstrap is not None, "a Kafka node has bootstrap servers"

        async def on_assignment(partitions: set[int]) -> None:
            await worker.revoke(worker.owned - partitions)
            worker.assign(partitions - worker.owned)

        membership = KafkaMembership(
            settings.kafka_bootstrap,
            settings.kafka_topic,
            settings.node_id,
            on_assignment,
            MembershipSettings(session_timeout_ms=settings.kafka_session_timeout_ms),
        )
        task = asyncio.create_task(membership.run(), name="membership")
        task.add_done_callback(self._fail_unless_cancelled)

        async def leave() -> None:
            """Leave the group (the partitions move at the next rebalance); idempotent."""
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._leave_cluster = leave
        stack.push_async_callback(leave)

    @staticmethod
    def _state_machine_config(partition: int) -> StateMachineConfig:
        return StateMachineConfig(partition=partition)


def _local_tables(worker: PartitionWorker) -> PartitionTables:
    """The partition tables of the partitions this node runs, read in a worker thread."""

    async def tables(names: frozenset[str], deadline: float) -> dict[str, pa.Table]:
        stores = [(partition, processor.store) for partition, processor in list(worker.processors.items())]
        return await asyncio.to_thread(partition_tables, stores, names, deadline)

    return tables


async def _check_state_within_log(wal: Log, database: RocksDatabase, settings: DuroSettings) -> None:
    """Refuse to start when the state store has applied entries the log no longer holds (every partition is this node's)."""
    for partition in range(settings.partitions):
        try:
            check_state_within_log(partition, applied_offset_of(database.partition(partition)), await wal.end_offset(partition))
        except StateAheadOfLogError as error:
            raise NodeStartError(f"{error} ({settings.data_dir / 'state'}; with it gone, start-up replays the whole log)") from None


class _ServerWithoutSignals(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to the node.

    uvicorn (0.29 and later) installs its own handlers while it serves, which
    would replace the node's: a SIGTERM would then only close the ports and wait
    for in-flight requests, and the node's own shutdown would start after them.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
