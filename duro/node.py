"""One duro node in one process: the embedded log, RocksDB, the partition processors, the ingress and the admin API.

`run_node` owns the process lifetime: it refuses a data dir in use, created
with another partition count or holding a file where a folder goes, serves until SIGINT/SIGTERM or a fatal error (a
part of the node died), and stops through `duro.lifecycle.Lifecycle`: after a
signal the graceful phase drains (`duro/drain.py`: new requests refused,
attempts ended or suspended, partitions handed over, waiting requests
answered), capped by `shutdown.timeout_ms`; a fatal error skips it. Then every
request still waiting is answered 503, and the servers, the processors, the
invoker, the log and the store are closed within `shutdown.close_timeout_ms`
(a watchdog ends the process if not). A fatal error exits 1 (`NodeFailure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyarrow as pa
from starlette.types import ASGIApp

from duro.cluster import ReplyRouter, announce_node
from duro.cluster_query import ClusterTables, internal_query_route
from duro.cores import usable_cores
from duro.descriptors import ConnectionBudget, DescriptorBudgetError, budget_connections
from duro.directory import RegistryDirectory
from duro.disk_full import DiskFullRecovery
from duro.drain import DrainParts, DrainReport, describe, drain
from duro.inspect import Stores, partition_tables, registry_target_kind
from duro.layout import (
    LOG_FOLDER,
    NODE_FILE,
    STATE_FOLDER,
    LayoutError,
    check_files,
    check_folders,
    expected_files,
    expected_folders,
    node_files,
    worker_dir,
)
from duro.lifecycle import Lifecycle
from duro.limits import LimitsError, effective_limits
from duro.logs import configure_logging
from duro.replay_progress import log_replay_progress
from duro.settings import DuroSettings, deprecated_settings_in_use
from duro.snapshots import NodeSnapshots
from duro.supervisor import WORKER_ENV, WORKER_LOG_ID_ENV, SupervisorStartError, WorkerRole, run_supervisor
from duro.telemetry import Telemetry
from duro.worker_log import partitions_of
from duro.worker_parts import WorkerParts
from ingress.admin import PartitionTables, build_admin_app
from ingress.admin import error_body as admin_error_body
from ingress.auth import BearerToken
from ingress.connections import ConnectionLimits
from ingress.discovery import discoverer_with
from ingress.http import build_ingress_app
from ingress.http import error_body as ingress_error_body
from ingress.kafka_inspect import KafkaInspector
from ingress.local_partitions import LocalPartitionKeys
from ingress.query import QueryThreads
from ingress.registry import FileRegistryStore, Registry, RegistryError, SharedRegistryStore
from ingress.serving import NodeHttpServer
from ingress.settings import ServiceDefaults
from ingress.subscription_admin import SubscriptionAdmin
from ingress.subscription_consumer import SubscriptionConsumer
from ingress.subscription_controller import SubscriptionController
from ingress.subscriptions import FileKeyValues, KafkaCluster, KeyValueStore, Subscription, SubscriptionRegistry, static_clusters
from partition_worker.gauges import GaugeSampler, GaugeSettings, SampledPartition
from partition_worker.invoker import Invoker
from partition_worker.processor import StateAheadOfLogError, applied_offset_of, check_state_within_log
from partition_worker.snapshotter import SnapshotIdentity
from partition_worker.state_machine import StateMachineConfig
from partition_worker.store import RocksDatabase
from partition_worker.worker import PartitionWorker
from protocol.journal_json import TargetKind
from protocol.request_identity import IdentityKeyError, RequestSigner
from wal.disk_space import DiskSpace, is_disk_full
from wal.embedded import EmbeddedLog, EmbeddedLogLimits
from wal.kafka import KafkaLog
from wal.kafka_membership import KafkaMembership, MembershipSettings
from wal.kafka_metadata import KafkaMetadata
from wal.kafka_settings import KafkaLogSettings
from wal.log import Log, LogError
from wal.replies import ReplyBus

log = logging.getLogger("duro.node")

PRIVATE_UMASK = 0o077


class NodeStartError(Exception):
    """The node cannot start; the message says why and what to change."""


class NodeFailure(Exception):
    """A component of the running node died; the node stopped without draining."""


def run_node(settings: DuroSettings) -> int:
    """Run a node until it stops; return the exit status. Raises NodeStartError if it cannot start, NodeFailure after a fatal error.

    A node of several workers (`workers > 1`, fixed in the data dir) runs its
    supervisor here (`duro.supervisor`), which starts this same command once
    per worker; a worker (`DURO_PROCESS_ROLE` set) runs its share as a node does.
    """
    role_text = os.environ.get(WORKER_ENV)
    role = WorkerRole.decode(role_text) if role_text else None
    configure_logging(settings.log_level, settings.log_format, settings.node_id, role.index if role is not None else None)
    os.umask(PRIVATE_UMASK)  # every file the node creates (log, RocksDB, registry, snapshots) is its user's alone
    if role is None:
        try:
            log_id, workers = check_data_dir(settings)
        except OSError as error:
            if is_disk_full(error):
                raise NodeStartError(_full_disk_at_start(settings, error)) from None
            raise
        if workers > 1:
            _check_before_workers(settings)
            try:
                return run_supervisor(settings, workers, log_id)
            except SupervisorStartError as error:
                raise NodeStartError(str(error)) from None
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.Runner()
    with runner:
        return runner.run(Node(settings, role).serve())


def freeze_startup_heap(young_threshold_objects: int) -> None:
    """Move what the node built to start (modules, settings, the registry, clients) out of the collector's reach.

    A full collection walks every object it tracks; with the startup heap in it
    one took 50-150 ms in a worker, a pause of the event loop (every request,
    every consumed event waits through it). `gc.freeze` keeps those objects out
    of later collections; garbage made afterwards is collected as before, the
    youngest generation after `young_threshold_objects` net allocations
    (`gc_young_threshold_objects`) instead of Python's 700, the older two at
    Python's defaults.
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    _, older_threshold, oldest_threshold = gc.get_threshold()
    gc.set_threshold(young_threshold_objects, older_threshold, oldest_threshold)
    log.info(
        "froze %d startup objects out of the garbage collector's reach in %.0f ms",
        gc.get_freeze_count(), (time.perf_counter() - started) * 1000,
    )  # fmt: skip


def _private_directory(data_dir: Path) -> None:
    """Create the data dir 0700, or take group and other access away from an existing one (it holds clients' headers)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = data_dir.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            data_dir.chmod(0o700)
        except OSError as error:
            log.warning("data dir %s is open to other users (mode %o) and could not be made 0700: %s", data_dir, mode, error)
        else:
            log.info("data dir %s was mode %o; it is now 0700", data_dir, mode)


def check_data_dir(settings: DuroSettings) -> tuple[str, int]:
    """Create the data dir, or check that it was created with the same partition and worker counts; return its log id and workers.

    Before anything is created, every folder duro makes under it must be a
    folder or absent (`duro.layout.check_folders`: one line naming what is in
    the way instead of a traceback from the first `mkdir`).

    The log id (since 0.2) names the embedded log this data dir holds, so that
    its snapshots are never restored into another log; a data dir from before
    gets one now. The worker count (since 0.3) is fixed like the partition
    count, since each worker's partitions live in its own log and state; a data
    dir from before it, or one that already holds a log or state, has one.
    """
    data_dir = settings.data_dir
    node_file = data_dir / NODE_FILE
    try:
        check_files(node_files(data_dir))
    except LayoutError as error:
        raise NodeStartError(str(error)) from None
    new = not node_file.exists()
    stored = {"partitions": settings.partitions} if new else json.loads(node_file.read_text())
    if stored.get("partitions") != settings.partitions:
        raise NodeStartError(
            f"data dir {data_dir} was created with --partitions {stored.get('partitions')}, not {settings.partitions};"
            " the partition count is fixed when the data dir is created: use the same value or a new --data-dir"
        )
    if "workers" not in stored:
        fresh = new and not (data_dir / LOG_FOLDER).exists() and not (data_dir / STATE_FOLDER).exists()
        stored["workers"] = (settings.workers or default_workers(settings)) if fresh else 1
    workers = int(stored["workers"])
    if settings.workers is not None and settings.workers != workers:
        raise NodeStartError(
            f"data dir {data_dir} was created with --workers {workers}, not {settings.workers}; the worker count is fixed"
            " when the data dir is created (each worker's partitions live in its own log and state): use the same value,"
            " leave --workers unset, or use a new --data-dir"
        )
    local_snapshots = settings.snapshots.repository is None
    try:
        check_folders(expected_folders(data_dir, workers, settings.partitions, settings.log == "embedded", local_snapshots))
        check_files(expected_files(data_dir, workers, settings.log == "embedded"))
    except LayoutError as error:
        raise NodeStartError(str(error)) from None
    _private_directory(data_dir)
    if "log_id" not in stored:
        stored["log_id"] = uuid.uuid4().hex
    if new or stored != json.loads(node_file.read_text()):
        temporary = node_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(stored))
        os.replace(temporary, node_file)
    return str(stored["log_id"]), workers


def default_workers(settings: DuroSettings) -> int:
    """Workers of a new data dir when --workers is unset: one per core this process may use (its affinity, capped by a
    cgroup CPU quota: `duro.cores`), at most one per partition; 1 on Kafka."""
    if settings.log != "embedded":
        return 1
    return max(1, min(usable_cores(), settings.partitions))


class Node:
    def __init__(self, settings: DuroSettings, role: WorkerRole | None = None) -> None:
        """`role`: this process is one worker of a node of several (`duro.supervisor`); its data is under `workers/<index>`."""
        self.role = role
        self.worker: WorkerParts | None = None
        if role is not None:
            settings = settings.model_copy(update={"data_dir": worker_dir(settings.data_dir, role.index)})
        self.settings = settings
        self.lifecycle = Lifecycle(settings.shutdown.timeout_ms, settings.shutdown.close_timeout_ms)
        self._leave_cluster: Callable[[], Awaitable[None]] | None = None
        self._disk_full: DiskFullRecovery | None = None
        self._budget: ConnectionBudget | None = None
        self._started = False  # the servers listen: from here on errors are the lifecycle's, not start-up's
        self._partitions_taken = False  # embedded log: a processor runs for every owned partition

    async def serve(self) -> int:
        """Start, serve until a stop is requested, stop within the bounds; return the exit status (NodeFailure if fatal)."""
        try:
            limits = effective_limits(self.settings)
        except LimitsError as error:
            raise NodeStartError(str(error)) from None
        self.settings = settings = self.settings.model_copy(
            update={
                "max_append_bytes": limits.max_append_bytes,
                "ingress": limits.ingress,
                "invoker": limits.invoker,
                "subscriptions": limits.subscriptions,
            }
        )
        try:
            return await self._serve()
        except NodeStartError:
            raise
        except Exception as error:
            if not self._started and is_disk_full(error):
                raise NodeStartError(_full_disk_at_start(settings, error)) from None
            raise

    async def _serve(self) -> int:
        settings = self.settings
        lifecycle = self.lifecycle
        if self.role is None or self.role.index == 0:  # once per node
            for warning in deprecated_settings_in_use(settings):
                log.warning("%s (remove it from the config or environment)", warning)
        if self.role is None:
            log_id, _ = check_data_dir(settings)
        else:
            _private_directory(settings.data_dir)
            log_id = os.environ[WORKER_LOG_ID_ENV]
            self.worker = await WorkerParts.open(self.role, settings, lifecycle)
        try:
            self._budget = budget_connections(
                settings.ingress.max_ingress_connections, settings.ingress.max_admin_connections, settings.reserved_file_descriptors
            )
        except DescriptorBudgetError as error:
            raise NodeStartError(str(error)) from None
        disk = DiskSpace(settings.data_dir, settings.min_free_disk_bytes, settings.disk_check_interval_ms)
        async with contextlib.AsyncExitStack() as stack:
            watching = asyncio.create_task(disk.run(), name="disk space sampler")
            watching.add_done_callback(self._fail_unless_cancelled)
            stack.callback(watching.cancel)
            wal, metadata = await self._open_log(stack)
            self._start_step("opening its state store")
            state_dir = str(settings.data_dir / STATE_FOLDER)
            database = RocksDatabase(state_dir, settings.state_max_open_files)
            recovery = self._disk_full = DiskFullRecovery(
                disk, database, lambda: RocksDatabase(state_dir, settings.state_max_open_files), lifecycle
            )
            stack.push_async_callback(lifecycle.closing("the state store", recovery.close))
            self._start_step("checking its state against its log")
            if metadata is None:
                await _check_state_within_log(wal, database, settings, self._owned_partitions())
            shared = metadata if metadata is not None else (self.worker.metadata if self.worker is not None else None)
            registry = Registry(SharedRegistryStore(shared) if shared is not None else FileRegistryStore(settings.data_dir))
            await registry.load()
            if shared is not None:
                shared.watch(lambda key, value: registry.install_document(value) if key == SharedRegistryStore.KEY and value else None)
            worker_index, worker_count = (self.role.index, self.role.count) if self.role is not None else (0, 1)
            reply_bus = ReplyBus(settings.node_id, settings.max_waiting_requests, worker_index, worker_count)
            siblings = self.worker.links if self.worker is not None else None
            router = ReplyRouter(reply_bus, metadata, peer_headers=self._peer_headers(), siblings=siblings)
            stack.push_async_callback(lifecycle.closing("the reply router", router.close))
            retry_policy = settings.retry.policy()
            telemetry = Telemetry(settings.tracing, settings.node_id)
            stack.push_async_callback(
                lifecycle.closing("the tracer", lambda: asyncio.to_thread(telemetry.close))
            )  # flushes queued spans, bounded by its timeout
            signer = self._request_signer()
            invoker = Invoker(
                RegistryDirectory(registry, settings.ingress, retry_policy),
                settings.invoker,
                tracer=telemetry.tracer("duro.invoker"),
                signer=signer,
            )
            stack.push_async_callback(lifecycle.closing("the invoker", invoker.close))
            log_name = f"kafka:{settings.kafka_topic}" if metadata is not None else f"embedded:{log_id}"
            if self.role is not None:
                log_name += f":worker-{self.role.index}-of-{self.role.count}"  # each worker's partitions live in its own log
            snapshots = NodeSnapshots(settings, database, wal, SnapshotIdentity(log_name, settings.partitions, settings.node_id))
            worker = PartitionWorker(
                settings.node_id,
                wal,
                database,
                invoker,
                router.deliver,
                self._state_machine_config,
                settings.processor,
                self._fail,
                restore=snapshots.restore,
            )
            recovery.worker = worker
            stack.push_async_callback(lifecycle.closing("the partition processors", worker.close))
            snapshotting = asyncio.create_task(snapshots.run(worker), name="snapshotter")
            snapshotting.add_done_callback(self._fail_unless_cancelled)
            stack.callback(snapshotting.cancel)
            sampler = GaugeSampler(
                wal,
                lambda: [SampledPartition(p, processor.applied_offset, processor.store) for p, processor in worker.processors.items()],
                settings.data_dir / STATE_FOLDER,
                GaugeSettings(settings.metrics_sample_interval_ms),
            )
            sampling = asyncio.create_task(sampler.run(), name="gauge sampler")
            sampling.add_done_callback(self._fail_unless_cancelled)
            stack.callback(sampling.cancel)
            ingress_app = build_ingress_app(wal, registry, reply_bus, settings.ingress, retry_policy, telemetry.tracer("duro.ingress"))
            ingress_app.ingress.partitions_without_leader = self._partitions_without_leader(worker)
            ingress_app.ingress.disk = disk
            if metadata is None:  # on Kafka the group's assignment says (`_join_cluster`)
                ingress_app.ingress.local_keys.own(self._owned_partitions())
            service_defaults = ServiceDefaults(retry_policy, settings.invoker.inactivity_timeout_ms, settings.invoker.abort_timeout_ms)
            query_threads = QueryThreads(settings.ingress.max_concurrent_queries)
            stack.callback(query_threads.close)
            subscriptions = await self._subscriptions(shared, registry)
            subscription_admin = SubscriptionAdmin(subscriptions, KafkaInspector(settings.subscriptions.kafka_timeout_ms))
            admin_app = build_admin_app(
                wal,
                registry,
                reply_bus,
                settings.ingress,
                partition_tables=self._partition_tables(worker, metadata, registry_target_kind(registry), query_threads),
                discoverer=discoverer_with(
                    settings.ingress.discovery_connect_timeout_ms,
                    settings.ingress.discovery_timeout_ms,
                    settings.ingress.max_manifest_bytes,
                    signer,
                ),
                service_defaults=service_defaults,
                extra_routes=[
                    *subscription_admin.routes(),
                    internal_query_route(
                        _stores_of(worker), settings.ingress.query_timeout_ms, registry_target_kind(registry), query_threads
                    ),
                ],
                metrics_source=self.worker.metrics if self.worker is not None else None,
                query_threads=query_threads,
            )
            if self.worker is not None:
                await self.worker.serve_links(stack, wal, reply_bus, _stores_of(worker), registry_target_kind(registry), query_threads)
            self._start_step("starting its servers")
            await self._serve_http(stack, ingress_app, admin_app)
            self._started = True
            if await lifecycle.unless_stopped(self._take_partitions(stack, worker, wal, metadata, ingress_app.ingress.local_keys)):
                freeze_startup_heap(self.settings.gc_young_threshold_objects)
                if self.worker is not None:
                    self.worker.ready(sorted(worker.owned))
                else:
                    log.info(
                        "duro node %d ready: ingress %s admin %s, %d partitions on the %s log, data in %s",
                        settings.node_id, settings.ingress_url, settings.admin_url, settings.partitions, settings.log, settings.data_dir,
                    )  # fmt: skip
            controller = self._consume_subscriptions(stack, subscriptions, registry, wal, reply_bus)
            parts = DrainParts(settings.node_id, ingress_app.ingress, invoker, worker, reply_bus, self._leave_cluster, controller.close)
            lifecycle.on_graceful("drain", lambda: self._drain(parts))
            await lifecycle.stop_requested.wait()
            await lifecycle.graceful_phase()
            reply_bus.close(f"node {settings.node_id} is stopping ({lifecycle.reason})")
            log.info("duro node %d stopping: closing its parts within %d ms", settings.node_id, settings.shutdown.close_timeout_ms)
        log.info("duro node %d stopped", settings.node_id)
        if lifecycle.fatal and lifecycle.reason:
            raise NodeFailure(f"node {settings.node_id} stopped because a component failed: {lifecycle.reason}")
        return lifecycle.exit_code

    async def _take_partitions(
        self,
        stack: contextlib.AsyncExitStack,
        worker: PartitionWorker,
        wal: Log,
        metadata: KafkaMetadata | None,
        local_keys: LocalPartitionKeys,
    ) -> bool:
        """Run every partition (embedded log) or join the cluster (Kafka); True once the node serves.

        On Kafka, `local_keys` follows the assignment, so that fresh unkeyed invocations go to partitions this node leads.
        """
        settings = self.settings
        if metadata is None:

            def applied() -> int:  # reported to the supervisor and logged
                return sum(p.applied_offset + 1 for p in worker.processors.values())

            self._start_step("replaying its partitions' log", applied)
            owned = self._owned_partitions()
            progress = asyncio.create_task(log_replay_progress(wal, owned, applied), name="replay progress lines")
            progress.add_done_callback(self._fail_unless_cancelled)
            try:
                worker.assign(owned)
                self._partitions_taken = True
                await worker.wait_leading()
            finally:
                progress.cancel()
        else:
            await announce_node(metadata, settings.node_id, settings.admin_url, settings.ingress_url)
            await self._join_cluster(stack, worker, local_keys)
        return True

    def _start_step(self, step: str, applied_positions: Callable[[], int] | None = None) -> None:
        """A worker process's start reached `step` (reported to its supervisor, whose stall bound restarts on progress)."""
        if self.worker is not None:
            self.worker.start_step = step
            if applied_positions is not None:
                self.worker.applied_positions = applied_positions

    def _partitions_without_leader(self, worker: PartitionWorker) -> Callable[[], list[int]]:
        """Readiness: this process's partitions that do not lead, and in a node of workers the partitions of workers not serving.

        The servers listen before the partitions are taken (`_take_partitions`): on the embedded log every partition
        this process will run counts as without leader until its processor exists, so that readiness never answers
        200 for a node that runs no processor yet. (On Kafka a node answers 200 before the group's first assignment.)
        """
        parts = self.worker

        def unready() -> list[int]:
            if not self._partitions_taken and self.settings.log == "embedded":
                return sorted(self._owned_partitions())
            without = set(worker.partitions_without_leader())
            if parts is not None:
                without |= parts.partitions_of_missing_workers()
            return sorted(without)

        return unready

    def _owned_partitions(self) -> set[int]:
        """The partitions this process runs on the embedded log: all of them, or a worker's share."""
        if self.role is None:
            return set(range(self.settings.partitions))
        return partitions_of(self.role.index, self.role.count, self.settings.partitions)

    def _partition_tables(
        self, worker: PartitionWorker, metadata: KafkaMetadata | None, target_kind: TargetKind, threads: QueryThreads
    ) -> PartitionTables:
        """What `POST /query` reads, on `threads`: this node's partitions, and on Kafka every other node's as well."""
        if self.worker is not None:
            return self.worker.tables(_stores_of(worker), target_kind, threads)
        if metadata is None:
            return _local_tables(worker, target_kind, threads)
        settings = self.settings
        return ClusterTables(
            settings.node_id, settings.partitions, _stores_of(worker), metadata, target_kind, threads, peer_headers=self._peer_headers()
        )

    def _request_signer(self) -> RequestSigner | None:
        """The request-identity signer of the configured private key (NodeStartError naming the file if it is unusable)."""
        path = self.settings.request_identity_private_key_pem_file
        if path is None:
            return None
        try:
            signer = RequestSigner.from_pem_file(path, self.settings.request_identity_expiration_ms)
        except IdentityKeyError as error:
            raise NodeStartError(str(error)) from None
        log.info("signing requests to deployments with request identity key %s", signer.key_id)
        return signer

    def _peer_headers(self) -> dict[str, str]:
        """What a node sends to the other nodes' admin APIs: the cluster's admin token, if it has one."""
        token = self.settings.ingress.admin_token
        return {} if token is None else BearerToken(token.get_secret_value(), frozenset()).header()

    def _limits(self, name: str, render_error: Callable[[int, str], bytes]) -> ConnectionLimits:
        """The connection bounds of one HTTP server; the caps come from the descriptor budget made at start-up."""
        ingress = self.settings.ingress
        assert self._budget is not None, "the descriptor budget is made before the servers start"
        return ConnectionLimits(
            name=f"{name} API",
            max_connections=self._budget.max_ingress_connections if name == "ingress" else self._budget.max_admin_connections,
            idle_timeout_ms=ingress.idle_timeout_ms,
            header_read_timeout_ms=ingress.header_read_timeout_ms,
            max_header_bytes=ingress.max_header_bytes,
            max_header_count=ingress.max_header_count,
            render_error=render_error,
        )

    def _fail(self, error: BaseException) -> None:
        """A partition processor died: wait out a full disk, stop the node for anything else."""
        if self._disk_full is not None and is_disk_full(error):
            self._disk_full.start(error)
        else:
            self.lifecycle.fail(f"a partition processor died: {error!r}")

    def _fail_unless_cancelled(self, task: asyncio.Task[None]) -> None:
        """A done-callback for the node's background tasks: their death stops the node."""
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.critical("%s died: %r", task.get_name(), error, exc_info=error)
            self.lifecycle.fail(f"{task.get_name()} died: {error!r}")

    async def _drain(self, parts: DrainParts) -> None:
        """The graceful phase's step (the lifecycle caps it with `shutdown.timeout_ms` and a second signal); logs what it did."""
        shutdown = self.settings.shutdown
        started = time.monotonic()
        report = DrainReport()
        completed = False
        try:
            await drain(parts, started + shutdown.timeout_ms / 1000, shutdown.attempt_drain_timeout_ms / 1000, report)
            completed = True
        finally:
            log.info("duro node %d %s", self.settings.node_id, describe(report, time.monotonic() - started, completed))

    async def _subscriptions(self, metadata: KeyValueStore | None, registry: Registry) -> SubscriptionRegistry:
        """The subscriptions and Kafka clusters: in the metadata topic on Kafka (shared by every node), or kept by the node's
        supervisor (shared by its workers), else in the data dir."""
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
        stack.push_async_callback(self.lifecycle.closing("the subscription consumers", controller.close))
        return controller

    async def _open_log(self, stack: contextlib.AsyncExitStack) -> tuple[Log, KafkaMetadata | None]:
        settings = self.settings
        try:
            if settings.log == "embedded":
                embedded = await EmbeddedLog.open(
                    settings.data_dir / LOG_FOLDER,
                    settings.partitions,
                    EmbeddedLogLimits(
                        max_append_bytes=settings.max_append_bytes or EmbeddedLogLimits().max_append_bytes,
                        max_segment_bytes=settings.log_max_segment_bytes,
                        max_cached_bytes=settings.log_max_cached_bytes,
                        max_group_commit_delay_us=settings.log_max_group_commit_delay_us,
                    ),
                    truncate_corrupt_tail=settings.truncate_corrupt_tail,
                )
                stack.push_async_callback(self.lifecycle.closing("the embedded log", embedded.close))
                if self.worker is not None:
                    return self.worker.log(embedded), None
                return embedded, None
            if not settings.kafka_bootstrap:
                raise NodeStartError("--log kafka needs --kafka-bootstrap HOST:PORT (or DURO_KAFKA_BOOTSTRAP)")
            kafka_settings = KafkaLogSettings(
                replication_factor=settings.kafka_replication_factor,
                connect_timeout_ms=settings.kafka_connect_timeout_ms,
                append_timeout_ms=settings.kafka_append_timeout_ms,
                max_tail_ahead_bytes=settings.kafka_max_tail_ahead_bytes,
                max_append_bytes=settings.max_append_bytes or KafkaLogSettings().max_append_bytes,
                max_group_bytes=min(KafkaLogSettings().max_group_bytes, settings.max_append_bytes or KafkaLogSettings().max_append_bytes),
            )
            kafka = await KafkaLog.open(settings.kafka_bootstrap, settings.kafka_topic, settings.partitions, kafka_settings)
            stack.push_async_callback(self.lifecycle.closing("the Kafka log", kafka.close))
            metadata = KafkaMetadata(
                settings.kafka_bootstrap,
                settings.kafka_metadata_topic,
                settings.kafka_replication_factor,
                open_timeout_ms=settings.kafka_connect_timeout_ms,
            )
            await metadata.open()
            stack.push_async_callback(self.lifecycle.closing("the Kafka metadata", metadata.close))
            metadata.on_reader_death(self._fail_unless_cancelled)
            return kafka, metadata
        except LogError as exc:
            raise NodeStartError(str(exc)) from exc

    async def _serve_http(self, stack: contextlib.AsyncExitStack, ingress_app: ASGIApp, admin_app: ASGIApp) -> None:
        """Listen on both ports (NodeStartError if one is taken), serve, and close them with the node."""
        settings = self.settings
        lifecycle = self.lifecycle
        servers = [
            NodeHttpServer("ingress", ingress_app, settings.bind, settings.ingress_port, self._limits("ingress", ingress_error_body)),
            NodeHttpServer(
                "admin", admin_app, settings.admin_bind or settings.bind, settings.admin_port, self._limits("admin", admin_error_body)
            ),
        ]
        for server in servers:
            try:
                server.listen(reuse_port=self.role is not None)  # every worker of a node listens on the node's ports
            except OSError as error:
                raise NodeStartError(f"cannot listen for the {server.name} API on {server.host}:{server.port}: {error.strerror}") from None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lifecycle.request_stop, f"{signal.Signals(signum).name} received")

        async def close_servers() -> None:
            await asyncio.gather(*(server.close(settings.shutdown.close_timeout_ms // 2) for server in servers))

        stack.push_async_callback(lifecycle.closing("the HTTP servers", close_servers))
        for server in servers:
            task = await server.start()
            task.add_done_callback(functools.partial(_server_stopped, lifecycle, server.name))

    async def _join_cluster(self, stack: contextlib.AsyncExitStack, worker: PartitionWorker, local_keys: LocalPartitionKeys) -> None:
        """Join the consumer group that assigns partitions; processors and the ingress's `local_keys` follow the assignment."""
        settings = self.settings
        assert settings.kafka_bootstrap is not None, "a Kafka node has bootstrap servers"

        async def on_assignment(partitions: set[int]) -> None:
            local_keys.own(partitions & worker.owned)  # none new until its processor runs; revoked ones at once
            await worker.revoke(worker.owned - partitions)
            worker.assign(partitions - worker.owned)
            local_keys.own(worker.owned)

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
        stack.push_async_callback(self.lifecycle.closing("the Kafka group membership", leave))

    @staticmethod
    def _state_machine_config(partition: int) -> StateMachineConfig:
        return StateMachineConfig(partition=partition)


def _stores_of(worker: PartitionWorker) -> Callable[[], Stores]:
    """The stores of the partitions this node runs now."""
    return lambda: [(partition, processor.store) for partition, processor in list(worker.processors.items())]


def _local_tables(worker: PartitionWorker, target_kind: TargetKind, threads: QueryThreads) -> PartitionTables:
    """The partition tables of the partitions this node runs, read on a query thread."""

    async def tables(names: frozenset[str], deadline: float) -> dict[str, pa.Table]:
        stores = [(partition, processor.store) for partition, processor in list(worker.processors.items())]
        return await threads.run(partition_tables, stores, names, deadline, target_kind)

    return tables


async def _check_state_within_log(wal: Log, database: RocksDatabase, settings: DuroSettings, partitions: set[int]) -> None:
    """Refuse to start when the state store has applied entries the log no longer holds (`partitions`: this process's)."""
    for partition in sorted(partitions):
        try:
            check_state_within_log(partition, applied_offset_of(database.partition(partition)), await wal.end_offset(partition))
        except StateAheadOfLogError as error:
            raise NodeStartError(f"{error} ({settings.data_dir / STATE_FOLDER}; with it gone, start-up replays the whole log)") from None


def _check_before_workers(settings: DuroSettings) -> None:
    """What would stop every worker at start, checked once by the supervisor (one message instead of one per worker)."""
    try:
        effective_limits(settings)
    except LimitsError as error:
        raise NodeStartError(str(error)) from None
    if settings.request_identity_private_key_pem_file is not None:
        try:
            RequestSigner.from_pem_file(settings.request_identity_private_key_pem_file, settings.request_identity_expiration_ms)
        except IdentityKeyError as error:
            raise NodeStartError(str(error)) from None


def _full_disk_at_start(settings: DuroSettings, error: BaseException) -> str:
    return (
        f"cannot start: the disk holding {settings.data_dir} is full ({_free_bytes(settings.data_dir)} bytes free;"
        f" {error}); free space and start again"
    )


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _server_stopped(lifecycle: Lifecycle, name: str, task: asyncio.Task[None]) -> None:
    """An HTTP server's task ended: expected once the node stops, fatal before."""
    if lifecycle.stop_requested.is_set():
        return
    error = None if task.cancelled() else task.exception()
    lifecycle.fail(f"the {name} HTTP server stopped unexpectedly ({error!r})")
