"""What a worker process of a node adds to a node's parts: its links to the other workers, the shared metadata, and node-wide reads.

A worker (`duro.supervisor` starts them) runs as a node does, on its share of
the partitions; these parts make the node whole again from inside one worker:
appends to the others' partitions (`duro.worker_log`), replies for requests
waiting at another worker (`duro.cluster.ReplyRouter`), the registry and the
subscriptions kept by the supervisor (`duro.worker_metadata`), `POST /query`
over every worker's partitions and `/metrics` of every worker. It also answers
the other workers' requests (`duro.worker_link.LinkServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

import pyarrow as pa

from duro.cluster_query import PerPartition, decode_tables, encode_tables, local_tables_by_partition, merge_tables
from duro.inspect import Stores
from duro.lifecycle import Lifecycle
from duro.settings import DuroSettings
from duro.supervisor import WorkerRole
from duro.worker_link import LinkClient, LinkError, LinkHandlers, LinkLimits, LinkServer, socket_name
from duro.worker_log import WorkerLog, owner_of
from duro.worker_metadata import WorkerMetadata
from duro.worker_metrics import merge_worker_metrics
from ingress import metrics as ingress_metrics
from ingress.admin import PartitionTables
from ingress.query import QueryThreads
from protocol.journal_json import TargetKind
from wal.log import Log
from wal.replies import ReplyBus, decode_reply

log = logging.getLogger("duro.worker")


_LINK_FRAME_ALLOWANCE_BYTES = 64 * 1024


def progress_report_interval_s(start_stall_timeout_ms: int) -> float:
    """How often a starting worker looks at its progress: every second, or four times within a shorter stall bound."""
    return min(1.0, start_stall_timeout_ms / 4000)


class WorkerParts:
    """One worker's links, metadata and node-wide reads. Make it with `WorkerParts.open`."""

    def __init__(self, role: WorkerRole, settings: DuroSettings, metadata: WorkerMetadata) -> None:
        self.role = role
        self.metadata = metadata
        worker = settings.worker
        max_frame_bytes = max(settings.max_append_bytes or 0, settings.ingress.max_internal_body_bytes) + _LINK_FRAME_ALLOWANCE_BYTES
        self._limits = LinkLimits(worker.link_timeout_ms, worker.max_link_pending_requests, max_frame_bytes, worker.max_link_buffered_bytes)
        self.links = {
            other: LinkClient(other, socket_name(role.node_token, other), self._limits)
            for other in range(role.count)
            if other != role.index
        }
        self._local_log: Log | None = None
        self._query_timeout_ms = settings.ingress.query_timeout_ms
        self._metrics_timeout_ms = worker.metrics_timeout_ms
        self._partition_count = settings.partitions
        self.start_step = "opening its log"
        self.applied_positions: Callable[[], int] = lambda: 0
        self._reporting: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, role: WorkerRole, settings: DuroSettings, lifecycle: Lifecycle) -> WorkerParts:
        """Take the node's shared values from the supervisor; the worker stops if its supervisor goes away."""
        metadata = WorkerMetadata(socket.socket(fileno=role.control_fd), settings.worker.control_timeout_ms)
        await metadata.open()
        task = asyncio.create_task(metadata.supervisor_gone.wait(), name="supervisor watch")
        task.add_done_callback(lambda _: lifecycle.fail("the node's supervisor is gone") if not task.cancelled() else None)

        async def stop_watching() -> None:  # a stopping worker may outlive its supervisor's channel
            task.cancel()

        lifecycle.on_graceful("supervisor watch", stop_watching)
        parts = cls(role, settings, metadata)
        parts._report_start_progress(progress_report_interval_s(settings.worker.start_stall_timeout_ms), lifecycle)
        return parts

    def start_progress(self) -> str:
        """How far this worker's start got: its step and, once it replays, the log positions its partitions applied."""
        applied = self.applied_positions()
        return f"{self.start_step} ({applied} log positions applied)" if applied else self.start_step

    def _report_start_progress(self, interval_s: float, lifecycle: Lifecycle) -> None:
        """Until `ready`, send the supervisor `start_progress` every `interval_s` when it changed (its stall bound restarts then)."""

        async def report() -> None:
            last = ""
            while True:
                progress = self.start_progress()
                if progress != last:
                    self.metadata.progress(progress)
                    last = progress
                await asyncio.sleep(interval_s)

        task = self._reporting = asyncio.create_task(report(), name="start progress reports")
        task.add_done_callback(
            lambda _: lifecycle.fail(f"start progress reports failed: {task.exception()!r}") if not task.cancelled() else None
        )

    def log(self, local: Log) -> WorkerLog:
        """The node's log as this worker sees it, on `local` (its own embedded log)."""
        self._local_log = local
        return WorkerLog(local, self.role.index, self.role.count, self.links)

    async def serve_links(
        self,
        stack: contextlib.AsyncExitStack,
        wal: Log,
        reply_bus: ReplyBus,
        stores: Callable[[], Stores],
        target_kind: TargetKind,
        threads: QueryThreads,
    ) -> None:
        """Answer the other workers (appends to this worker's partitions, replies, queries read on `threads`, metrics) until the node closes."""
        local = self._local_log
        assert local is not None, "log() before serve_links()"
        role = self.role

        async def append(partition: int, entries: list[bytes]) -> int:
            assert owner_of(partition, role.count) == role.index, f"partition {partition} is not worker {role.index}'s"
            return await local.append(partition, entries)

        def reply(encoded: bytes) -> None:
            sink, answer = decode_reply(encoded)
            reply_bus.deliver(sink, answer)

        async def query(names: list[str], timeout_ms: int) -> bytes:
            deadline = time.monotonic() + min(timeout_ms, self._query_timeout_ms) / 1000
            tables = await threads.run(local_tables_by_partition, list(stores()), frozenset(names), deadline, target_kind)
            return encode_tables(tables)

        async def metrics() -> bytes:
            return ingress_metrics.render()[0]

        server = LinkServer(socket_name(role.node_token, role.index), LinkHandlers(append, reply, query, metrics), self._limits)
        await server.start()
        stack.push_async_callback(server.close)
        stack.push_async_callback(self._close_links)

    async def _close_links(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links.values()))

    def partitions_of_missing_workers(self) -> set[int]:
        """The partitions of the other workers that do not serve now (starting, or restarting after they died)."""
        ready = self.metadata.ready_workers() | {self.role.index}
        return {p for p in range(self._partition_count) if owner_of(p, self.role.count) not in ready}

    def ready(self, partitions: list[int]) -> None:
        log.info("worker %d of %d serves partitions %s", self.role.index, self.role.count, partitions)
        if self._reporting is not None:
            self._reporting.cancel()
        self.metadata.ready()

    async def metrics(self) -> tuple[bytes, str]:
        """The Prometheus text of every worker that answers, each sample labelled with its worker."""
        own, content_type = ingress_metrics.render()
        texts = {self.role.index: own.decode()}
        timeout_s = self._metrics_timeout_ms / 1000
        answers = await asyncio.gather(
            *(asyncio.wait_for(link.metrics(), timeout_s) for link in self.links.values()), return_exceptions=True
        )
        for other, answer in zip(self.links, answers, strict=True):
            if isinstance(answer, bytes):
                texts[other] = answer.decode()
            elif isinstance(answer, TimeoutError):
                log.warning(
                    "worker %d gave no metrics within worker.metrics_timeout_ms=%d: left out of this scrape",
                    other,
                    self._metrics_timeout_ms,
                )
            else:
                log.info("worker %d gave no metrics: %r", other, answer)
        return merge_worker_metrics(texts).encode(), content_type

    def tables(self, stores: Callable[[], Stores], target_kind: TargetKind, threads: QueryThreads) -> PartitionTables:
        """What `POST /query` reads on a worker: its own partitions (read on `threads`) and every other worker's (asked over the links)."""

        async def read(names: frozenset[str], deadline: float) -> dict[str, pa.Table]:
            if not names:
                return {}
            local = threads.run(local_tables_by_partition, list(stores()), names, deadline, target_kind)
            remote = [self._ask(link, names, deadline) for link in self.links.values()]
            results: list[PerPartition | BaseException] = await asyncio.gather(local, *remote, return_exceptions=True)
            return merge_tables(results, names, self._partition_count)

        return read

    async def _ask(self, link: LinkClient, names: frozenset[str], deadline: float) -> PerPartition:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise TimeoutError("no time left to ask the other workers")
        try:
            return decode_tables(await link.query(sorted(names), remaining_ms))
        except LinkError as error:
            log.info("worker %d gave no query rows: %s", link.worker, error)
            raise
