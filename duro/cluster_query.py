"""The partition tables of the whole cluster for `POST /query`: this node's partitions plus every other node's, fetched over the nodes' internal HTTP.

Each node answers `POST /internal/query-tables` (`{"tables": [...], "timeout_ms": N}`)
with the tables of the partitions it runs now, per partition, as Arrow IPC
streams in one msgpack map `{partition: {table: ipc}}`. The asking node merges
them partition by partition (a partition reported twice during a rebalance is
taken once), so a query sees every partition some live node runs. A node that
does not answer in time is left out and the partitions nobody reported are
named in the log and in `QueryCoverage.missing`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
import msgpack
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response

from duro.cluster import node_key
from duro.inspect import Stores, partition_tables
from ingress.admin import Handler
from ingress.query import QueryThreads, rows_table, to_arrow_ipc
from protocol.journal_json import TargetKind
from wal.kafka_metadata import KafkaMetadata

log = logging.getLogger("duro.cluster_query")

INTERNAL_PATH = "/internal/query-tables"
PerPartition = dict[int, dict[str, pa.Table]]


def local_tables_by_partition(stores: Stores, names: frozenset[str], deadline: float, target_kind: TargetKind) -> PerPartition:
    """The named tables of each of `stores`' partitions (synchronous: run it on a query thread)."""
    return {partition: partition_tables([(partition, store)], names, deadline, target_kind) for partition, store in stores}


def encode_tables(tables: PerPartition) -> bytes:
    return msgpack.packb({partition: {name: to_arrow_ipc(table) for name, table in named.items()} for partition, named in tables.items()})


def decode_tables(data: bytes) -> PerPartition:
    raw = msgpack.unpackb(data, strict_map_key=False)
    return {int(p): {name: pa.ipc.open_stream(ipc).read_all() for name, ipc in named.items()} for p, named in raw.items()}


@dataclass
class QueryCoverage:
    """Which partitions the last cluster read saw."""

    partitions: set[int] = field(default_factory=set)
    missing: set[int] = field(default_factory=set)


class ClusterTables:
    """`PartitionTables` for a node on Kafka: its own partitions' rows and every other node's."""

    def __init__(
        self,
        node_id: int,
        partition_count: int,
        local_stores: Callable[[], Stores],
        metadata: KafkaMetadata,
        target_kind: TargetKind,
        threads: QueryThreads,
        max_in_flight: int = 16,
        peer_headers: dict[str, str] | None = None,
    ) -> None:
        """This node's rows are read on `threads`; `peer_headers` go with every request to another node (its admin token, when the cluster has one)."""
        self._target_kind = target_kind
        self._threads = threads
        self._node_id = node_id
        self._peer_headers = peer_headers or {}
        self._partition_count = partition_count
        self._local_stores = local_stores
        self._metadata = metadata
        self._slots = asyncio.Semaphore(max_in_flight)
        self.last_coverage = QueryCoverage()

    async def __call__(self, names: frozenset[str], deadline: float) -> dict[str, pa.Table]:
        if not names:
            return {}
        stores = list(self._local_stores())
        local = self._threads.run(local_tables_by_partition, stores, names, deadline, self._target_kind)
        remote = [self._fetch(url, names, deadline) for url in self._peer_admin_urls()]
        results = await asyncio.gather(local, *remote, return_exceptions=True)
        coverage = QueryCoverage()
        tables = merge_tables(results, names, self._partition_count, coverage)
        self.last_coverage = coverage
        return tables

    def _peer_admin_urls(self) -> list[str]:
        urls = []
        for key, raw in list(self._metadata.values.items()):
            if not key.startswith("node/") or key == node_key(self._node_id) or not raw:
                continue
            urls.append(json.loads(raw)["admin_url"].rstrip("/"))
        return urls

    async def _fetch(self, admin_url: str, names: frozenset[str], deadline: float) -> PerPartition:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise TimeoutError("no time left to ask the other nodes")
        body = {"tables": sorted(names), "timeout_ms": int(remaining_s * 1000)}
        try:
            async with (
                self._slots,
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=remaining_s)) as session,
                session.post(admin_url + INTERNAL_PATH, json=body, headers=self._peer_headers) as response,
            ):
                data = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{admin_url} answered {response.status}: {data[:200]!r}")
        except (aiohttp.ClientError, TimeoutError, OSError, RuntimeError) as error:
            log.info("node at %s gave no query rows: %r", admin_url, error)
            raise
        return decode_tables(data)


def merge_tables(
    results: list[PerPartition | BaseException], names: frozenset[str], partition_count: int, coverage: QueryCoverage | None = None
) -> dict[str, pa.Table]:
    """The named tables over every partition some source reported (the first source is this process's own read, which must not fail).

    A partition reported twice (during a rebalance) is taken once; sources that
    failed are left out and the partitions nobody reported are logged (and
    noted in `coverage`).
    """
    merged: PerPartition = {}
    for result in results:
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if result is results[0]:
                raise result  # this process's own read failed (a timeout): the query fails
            continue
        for partition, named in result.items():
            merged.setdefault(partition, named)
    missing = set(range(partition_count)) - set(merged)
    if coverage is not None:
        coverage.partitions, coverage.missing = set(merged), missing
    if missing:
        log.warning("query read no rows for partitions %s (their nodes or workers did not answer in time)", sorted(missing))
    return {name: _concat(name, (named[name] for named in merged.values() if name in named)) for name in names}


def internal_query_route(
    local_stores: Callable[[], Stores], max_timeout_ms: int, target_kind: TargetKind, threads: QueryThreads
) -> tuple[str, str, str, Handler]:
    """`POST /internal/query-tables` (an admin route): this node's partition tables, read on `threads`, for a query another node runs."""

    async def endpoint(request: Request, api_version: int) -> Response:
        try:
            body = json.loads(await request.body())
            names = frozenset(str(name) for name in body["tables"])
            timeout_ms = min(int(body.get("timeout_ms", max_timeout_ms)), max_timeout_ms)
        except (ValueError, KeyError, TypeError) as error:
            return Response(f'expected {{"tables": [...], "timeout_ms": N}}: {error}', status_code=400)
        deadline = time.monotonic() + timeout_ms / 1000
        stores = list(local_stores())
        try:
            tables = await threads.run(local_tables_by_partition, stores, names, deadline, target_kind)
        except Exception as error:  # QueryTimeout and anything the read raises: the asking node leaves these partitions out
            return Response(f"could not read the partition tables: {error}", status_code=503)
        return Response(encode_tables(tables), media_type="application/x-msgpack")

    return (INTERNAL_PATH, "POST", "internal_query_tables", endpoint)


def _concat(name: str, tables: Iterable[pa.Table]) -> pa.Table:
    parts = list(tables)
    return pa.concat_tables(parts) if parts else rows_table(name, [])
