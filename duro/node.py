"""One duro node in one process: the embedded log, RocksDB, the partition processors, the ingress and the admin API.

`run_node` owns the process lifetime: it refuses a data dir in use or created
with another partition count, serves until SIGINT/SIGTERM, then stops the
servers, the processors and the invoker, and closes the log and the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import uvicorn

from duro.directory import RegistryDirectory
from duro.inspect import invocation_rows
from duro.settings import DuroSettings
from ingress.admin import build_admin_app
from ingress.http import build_ingress_app
from ingress.registry import FileRegistryStore, Registry
from partition_worker.invoker import Invoker, InvokerSettings
from partition_worker.processor import ProcessorSettings
from partition_worker.state_machine import RetryPolicy, StateMachineConfig
from partition_worker.worker import PartitionWorker
from partition_worker.store import RocksDatabase
from wal.embedded import EmbeddedLog
from wal.log import LogError
from wal.replies import ReplyBus

log = logging.getLogger("duro.node")

NODE_FILE = "duro.json"


class NodeStartError(Exception):
    """The node cannot start; the message says why and what to change."""


def run_node(settings: DuroSettings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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

    async def serve(self) -> None:
        settings = self.settings
        check_data_dir(settings)
        try:
            wal = await EmbeddedLog.open(settings.data_dir / "log", settings.partitions)
        except LogError as exc:
            raise NodeStartError(str(exc)) from exc
        database = RocksDatabase(str(settings.data_dir / "state"))
        registry = Registry(FileRegistryStore(settings.data_dir))
        await registry.load()
        reply_bus = ReplyBus(settings.node_id, settings.max_waiting_requests)
        invoker = Invoker(RegistryDirectory(registry), InvokerSettings(**settings.invoker.model_dump()))
        worker = PartitionWorker(
            settings.node_id,
            wal,
            database,
            invoker,
            reply_bus.deliver,
            self._state_machine_config,
            ProcessorSettings(max_apply_batch_records=settings.max_apply_batch_records),
            lambda _: self._stop.set(),
        )
        worker.assign(set(range(settings.partitions)))
        ingress_app = build_ingress_app(wal, registry, reply_bus, settings.ingress)
        admin_app = build_admin_app(wal, registry, reply_bus, settings.ingress, invocation_rows=lambda: invocation_rows(worker))
        servers = [
            uvicorn.Server(uvicorn.Config(ingress_app, host=settings.bind, port=settings.ingress_port, log_level="warning", lifespan="off", access_log=False)),
            uvicorn.Server(uvicorn.Config(admin_app, host=settings.bind, port=settings.admin_port, log_level="warning", lifespan="off", access_log=False)),
        ]
        for server in servers:
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        server_tasks = [asyncio.create_task(s.serve()) for s in servers]
        await worker.wait_leading()
        log.info(
            "duro node %d ready: ingress http://%s:%d admin http://%s:%d, %d partitions, data in %s",
            settings.node_id, settings.bind, settings.ingress_port, settings.bind, settings.admin_port, settings.partitions, settings.data_dir,
        )
        try:
            await self._stop.wait()
        finally:
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*server_tasks, return_exceptions=True)
            await worker.close()
            await invoker.close()
            await wal.close()
            database.close()

    def _state_machine_config(self, partition: int) -> StateMachineConfig:
        settings = self.settings
        retry = settings.retry
        return StateMachineConfig(
            partition=partition,
            retry_policy=RetryPolicy(retry.initial_interval_ms, retry.factor, retry.max_interval_ms, retry.max_attempts),
            completion_retention_ms=settings.completion_retention_ms,
            idempotency_retention_ms=settings.ingress.default_idempotency_retention_ms,
            workflow_retention_ms=settings.ingress.default_workflow_completion_retention_ms,
        )

