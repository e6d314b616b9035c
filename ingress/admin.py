"""The admin API (port 9070): deployments, services and handlers, invocation commands, state and promises, version, health and metrics.

Paths, status codes and JSON shapes are Restate's, so the `restate` CLI works
against it (duro's additions: `POST /services/{workflow}/promises`, and the web
console under `/ui`, `ingress.console`). Every route is served at the root and under `/v2`, `/v3` and `/v4`
(the CLI picks the highest version `/version` offers); `/v1` answers 400.
Errors have Restate's admin body `{"message": ..., "restate_code": ...}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Final

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ingress import metrics
from ingress.auth import BearerToken, RequireToken
from ingress.body_limit import BodyLimit
from ingress.console import console_routes
from ingress.deployment_targets import DeploymentTargets
from ingress.discovery import (
    Discoverer,
    DiscoveryError,
    InvalidUriError,
    discoverer_with,
)
from ingress.durations import format_friendly_ms, format_rfc3339_ms, parse_duration_ms
from ingress.errors import (
    ApiError,
    BadGateway,
    BadRequest,
    Conflict,
    GatewayTimeout,
    InsufficientStorage,
    Internal,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
    kind_of_status,
)
from ingress.http import ReplyWaiter
from ingress.json_input import parse_json
from ingress.openapi import service_openapi
from ingress.query import ARROW_STREAM, QueryError, QueryResult, QueryThreads, QueryTimeout, rows_table, run_query, to_arrow_ipc, to_json
from ingress.registry import (
    Deployment,
    RegisterOutcome,
    Registry,
    RegistryError,
    ServiceChange,
    ServiceRevision,
)
from ingress.schema import (
    DiscoveredEndpoint,
    HandlerInfo,
    RetryPolicy,
    SchemaError,
    ServiceInfo,
    describe_input,
    describe_output,
)
from ingress.settings import IngressSettings, ServiceDefaults
from ingress.sql_tables import PARTITION_TABLES, REGISTRY_TABLES, tables_read_by
from protocol.ids import InvocationId
from protocol.routing import partition_key_for_key
from wal.disk_space import is_disk_full
from wal.log import Log
from wal.partitioner import partition_of
from wal.records import (
    DEFAULT_RETRY_POLICY,
    Cancel,
    CompletePromise,
    Failure,
    HandlerKind,
    IngressSink,
    Kill,
    Outcome,
    PatchState,
    Pause,
    Purge,
    PurgeJournal,
    RecordBody,
    RestartAsNew,
    Resume,
    ServiceType,
)
from wal.records import RetryPolicy as AppliedRetryPolicy
from wal.replies import Reply, ReplyBus, ReplyKind, decode_reply

DURO_VERSION: Final = "1.7.0"
"""The Restate server version duro reports on /version (the API level it implements)."""
MIN_ADMIN_API_VERSION: Final = 2
MAX_ADMIN_API_VERSION: Final = 4
UNVERSIONED: Final = 0

_QUERY_GRACE_S: Final = 1.0
"""How long past its deadline a query's thread may take to notice it before the answer is 504 anyway."""

_SERVICE_TYPE_NAMES = {
    ServiceType.SERVICE: "Service",
    ServiceType.VIRTUAL_OBJECT: "VirtualObject",
    ServiceType.WORKFLOW: "Workflow",
}
_HANDLER_KIND_NAMES = {HandlerKind.EXCLUSIVE: "Exclusive", HandlerKind.SHARED: "Shared", HandlerKind.WORKFLOW: "Workflow"}
_PROTOCOL_TYPES = {"BIDI_STREAM": "BidiStream", "REQUEST_RESPONSE": "RequestResponse"}
_ON_MAX_ATTEMPTS = {"PAUSE": "Pause", "KILL": "Kill"}

ADMIN_OPEN_PATHS = frozenset({"/health"})  # the liveness probe needs no token
Handler = Callable[[Request, int], Awaitable[Response]]
PartitionTables = Callable[[frozenset[str], float], Awaitable[dict[str, pa.Table]]]
"""Builds the named partition tables (rows of every partition of the cluster) before the monotonic deadline."""

log = logging.getLogger("duro.admin")


async def _no_partition_tables(names: frozenset[str], deadline: float) -> dict[str, pa.Table]:
    return {}


class UpdateDeploymentRequest(BaseModel):
    """Body of `PATCH /deployments/{id}`."""

    model_config = ConfigDict(extra="ignore")

    uri: str | None = None
    additional_headers: dict[str, str] | None = None
    use_http_11: bool | None = None
    overwrite: bool = False
    dry_run: bool = False


class ModifyServiceRequest(BaseModel):
    """Body of `PATCH /services/{service}`: durations as `5m`, `1 hour`, `PT5M` or milliseconds."""

    model_config = ConfigDict(extra="forbid")

    public: bool | None = None
    idempotency_retention: str | int | None = None
    workflow_completion_retention: str | int | None = None
    journal_retention: str | int | None = None
    inactivity_timeout: str | int | None = None
    abort_timeout: str | int | None = None
    retry_policy: RetryPolicyPatch | None = None

    def change(self) -> ServiceChange:
        return ServiceChange(
            public=self.public,
            idempotency_retention_ms=_duration_field("idempotency_retention", self.idempotency_retention),
            workflow_completion_retention_ms=_duration_field("workflow_completion_retention", self.workflow_completion_retention),
            journal_retention_ms=_duration_field("journal_retention", self.journal_retention),
            inactivity_timeout_ms=_duration_field("inactivity_timeout", self.inactivity_timeout),
            abort_timeout_ms=_duration_field("abort_timeout", self.abort_timeout),
            retry_policy=self.retry_policy.declared() if self.retry_policy is not None else None,
        )


class RetryPolicyPatch(BaseModel):
    """A service's retry policy, as the admin API shows it (`retry_policy` of `GET /services/{service}`)."""

    model_config = ConfigDict(extra="forbid")

    initial_interval: str | int | None = None
    exponentiation_factor: float | None = None
    max_attempts: int | None = None
    max_interval: str | int | None = None
    on_max_attempts: str | None = None

    def declared(self) -> RetryPolicy:
        on_max = self.on_max_attempts.upper() if self.on_max_attempts is not None else None
        if on_max not in (None, "PAUSE", "KILL"):
            raise BadRequest(
                f"The request field 'retry_policy.on_max_attempts' is invalid. Reason: expected Pause or Kill, got {self.on_max_attempts!r}",
            )
        return RetryPolicy(
            initial_interval_ms=_duration_field("retry_policy.initial_interval", self.initial_interval),
            max_interval_ms=_duration_field("retry_policy.max_interval", self.max_interval),
            max_attempts=self.max_attempts,
            exponentiation_factor=self.exponentiation_factor,
            on_max_attempts=on_max,
        )


Byte = Annotated[int, Field(ge=0, le=255)]
"""One byte of a value sent as a list of numbers (as the `restate` CLI sends state)."""


class ModifyServiceStateRequest(BaseModel):
    """Body of `POST /services/{service}/state`: values are byte arrays (the CLI sends them as lists of numbers)."""

    model_config = ConfigDict(extra="ignore")

    version: str | None = None
    object_key: str
    new_state: dict[str, list[Byte]]


class PromiseFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: int = Field(ge=0, le=65535)
    message: str


class CompletePromiseRequest(BaseModel):
    """Body of `POST /services/{workflow}/promises`: the workflow's key, the promise's name, and its value (bytes) or failure."""

    model_config = ConfigDict(extra="forbid")

    object_key: str
    promise: str = Field(min_length=1)
    value: list[Byte] | None = None
    failure: PromiseFailure | None = None


def _duration_field(name: str, value: str | int | None) -> int | None:
    if value is None:
        return None
    try:
        return value if isinstance(value, int) else parse_duration_ms(value)
    except ValueError as error:
        raise BadRequest(f"The request field '{name}' is invalid. Reason: {error}") from None


class RegisterDeploymentRequest(BaseModel):
    """Body of `POST /deployments` (HTTP deployments; Lambda is not supported)."""

    model_config = ConfigDict(extra="ignore")

    uri: str
    additional_headers: dict[str, str] | None = None
    metadata: dict[str, str] = {}
    use_http_11: bool = False
    breaking: bool = False
    force: bool | None = None
    dry_run: bool = False


def build_admin_app(
    log: Log,
    registry: Registry,
    reply_bus: ReplyBus,
    settings: IngressSettings | None = None,
    discoverer: Discoverer | None = None,
    partition_tables: PartitionTables | None = None,
    service_defaults: ServiceDefaults | None = None,
    extra_routes: Sequence[tuple[str, str, str, Handler]] = (),
    metrics_source: Callable[[], Awaitable[tuple[bytes, str]]] | None = None,
    query_threads: QueryThreads | None = None,
) -> Starlette:
    """The admin ASGI app; serve it on port 9070. `discoverer` defaults to real discovery with the settings' limits.

    `partition_tables` builds the partition tables `POST /query` reads.
    `service_defaults` are the node's retry policy and timeouts, shown for
    services that declare none (without them, only declared values and the
    built-in retry policy are shown).
    `extra_routes` (path, method, kind, handler) are served like the built-in
    ones, e.g. the subscription routes of `ingress.subscription_admin`.
    `metrics_source` renders `GET /metrics` (default: this process's registry;
    a node of several workers merges every worker's).
    `query_threads` run the SQL of `POST /query` (the node shares its own with
    `partition_tables`; without it the app makes `max_concurrent_queries` of its own).
    """
    chosen = settings or IngressSettings()
    if discoverer is None:
        discoverer = discoverer_with(chosen.discovery_connect_timeout_ms, chosen.discovery_timeout_ms, chosen.max_manifest_bytes)
    defaults = service_defaults or ServiceDefaults(DEFAULT_RETRY_POLICY, 0, 0)
    threads = query_threads or QueryThreads(chosen.max_concurrent_queries)
    api = AdminApi(log, registry, reply_bus, chosen, discoverer, partition_tables or _no_partition_tables, defaults, threads)
    if metrics_source is not None:
        api.metrics_source = metrics_source
    body_limit = Middleware(BodyLimit, chosen.max_admin_body_bytes, chosen.max_internal_body_bytes, error_body)
    token = None if chosen.admin_token is None else BearerToken(chosen.admin_token.get_secret_value(), ADMIN_OPEN_PATHS)
    require_token = Middleware(RequireToken, token, error_body)
    return Starlette(
        routes=api.routes(extra_routes), exception_handlers={404: _route_error, 405: _route_error}, middleware=[require_token, body_limit]
    )


async def _render_metrics() -> tuple[bytes, str]:
    return metrics.render()


async def _route_error(request: Request, error: Exception) -> Response:
    """Unknown paths and methods answer with the admin error body, so clients print a message."""
    status = getattr(error, "status_code", 404)
    what = "no such route" if status == 404 else "method not allowed"
    return json_response(status, {"message": f"{what}: {request.method} {request.url.path}", "restate_code": None})


class AdminApi:
    """Request handling of the admin API; one instance per app."""

    def __init__(
        self,
        log: Log,
        registry: Registry,
        reply_bus: ReplyBus,
        settings: IngressSettings,
        discoverer: Discoverer,
        partition_tables: PartitionTables,
        service_defaults: ServiceDefaults,
        query_threads: QueryThreads,
    ) -> None:
        self.service_defaults = service_defaults
        self.metrics_source: Callable[[], Awaitable[tuple[bytes, str]]] = _render_metrics
        self.query_threads = query_threads
        self.log = log
        self.registry = registry
        self.partition_tables = partition_tables
        self._query_slots = asyncio.Semaphore(settings.max_concurrent_queries)
        self.settings = settings
        self.discoverer = discoverer
        self.targets = DeploymentTargets(settings.allowed_deployment_hosts, settings.forbid_private_deployment_targets)
        self.waiter = ReplyWaiter(log, reply_bus)
        self.reply_bus = reply_bus

    def routes(self, extra_routes: Sequence[tuple[str, str, str, Handler]] = ()) -> list[Route]:
        table: list[tuple[str, str, str, Handler]] = [
            *extra_routes,
            ("/version", "GET", "version", self.version),
            ("/health", "GET", "health", self.health),
            ("/deployments", "GET", "list_deployments", self.list_deployments),
            ("/deployments", "POST", "register_deployment", self.register_deployment),
            ("/deployments/{deployment_id}", "GET", "get_deployment", self.get_deployment),
            ("/deployments/{deployment_id}", "DELETE", "delete_deployment", self.delete_deployment),
            ("/deployments/{deployment_id}", "PATCH", "update_deployment", self.update_deployment),
            ("/services", "GET", "list_services", self.list_services),
            ("/services/{service}", "GET", "get_service", self.get_service),
            ("/services/{service}", "PATCH", "modify_service", self.modify_service),
            ("/services/{service}/state", "POST", "modify_service_state", self.modify_service_state),
            ("/services/{service}/promises", "POST", "complete_promise", self.complete_promise),
            ("/services/{service}/openapi", "GET", "get_service_openapi", self.get_service_openapi),
            ("/services/{service}/handlers", "GET", "list_handlers", self.list_handlers),
            ("/services/{service}/handlers/{handler}", "GET", "get_handler", self.get_handler),
            ("/invocations/{invocation_id}/{command}", "PATCH", "invocation_command", self.invocation_command),
            ("/invocations/{invocation_id}", "DELETE", "delete_invocation", self.delete_invocation),
            ("/query", "POST", "query", self.query),
        ]
        routes = [Route("/metrics", self.metrics, methods=["GET"]), Route("/internal/replies", self.internal_reply, methods=["POST"])]
        for prefix, version in (("", UNVERSIONED), ("/v2", 2), ("/v3", 3), ("/v4", 4)):
            for path, method, kind, handler in table:
                routes.append(Route(prefix + path, _endpoint(kind, handler, version), methods=[method]))
        routes.append(Route("/v1/{rest:path}", self.unsupported_v1, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]))
        routes.extend(console_routes())  # the web console, a client of the routes above
        return routes

    # ------------------------------------------------------------ version, health, metrics

    async def version(self, request: Request, api_version: int) -> Response:
        return json_response(
            200,
            {
                "version": DURO_VERSION,
                "min_admin_api_version": MIN_ADMIN_API_VERSION,
                "max_admin_api_version": MAX_ADMIN_API_VERSION,
                "ingress_endpoint": self.settings.advertised_ingress_url,
                "features": {},
            },
        )

    async def health(self, request: Request, api_version: int) -> Response:
        """200 while the process serves: the Helm chart's liveness and start-up probe (a failing liveness probe restarts the pod).

        Readiness (take no traffic now) is the ingress's `/restate/health`, which answers 503 while the node drains.
        """
        return Response(status_code=200)

    async def metrics(self, request: Request) -> Response:
        body, content_type = await self.metrics_source()
        return Response(body, status_code=200, headers={"content-type": content_type})

    async def unsupported_v1(self, request: Request) -> Response:
        return Response(
            f"Unsupported Admin API version V1. This server supports versions between V{MIN_ADMIN_API_VERSION}"
            f" and V{MAX_ADMIN_API_VERSION}.",
            status_code=400,
        )

    # ------------------------------------------------------------ deployments

    async def register_deployment(self, request: Request, api_version: int) -> Response:
        body = await _json_body(request)
        if isinstance(body, dict) and "arn" in body and "uri" not in body:
            raise BadRequest("The request field 'arn' is invalid. Reason: Lambda deployments are not supported by duro")
        if isinstance(body, dict) and body.get("auth") is not None:
            raise BadRequest("The request field 'auth' is invalid. Reason: deployment authentication is not supported by duro")
        try:
            parsed = RegisterDeploymentRequest.model_validate(body)
        except ValidationError as error:
            raise BadRequest(_describe_validation(error)) from None
        force = parsed.force if parsed.force is not None else api_version == 2
        headers = parsed.additional_headers or {}
        endpoint = await self._discover(parsed.uri, headers, parsed.use_http_11)
        try:
            result = await self.registry.register(
                endpoint,
                additional_headers=headers,
                metadata=parsed.metadata,
                force=force,
                breaking=parsed.breaking,
                dry_run=parsed.dry_run,
            )
        except RegistryError as error:
            raise error.kind(error.message, restate_code=error.restate_code) from None
        deployment = result.deployment
        status = _register_status(result.outcome, api_version, deployment.id)
        payload: dict[str, Any] = {
            "id": deployment.id,
            "services": self._services_of(deployment),
            "min_protocol_version": deployment.min_protocol_version,
            "max_protocol_version": deployment.max_protocol_version,
        }
        _put(payload, "sdk_version", deployment.sdk_version)
        return json_response(status, payload, {"location": f"deployments/{deployment.id}"})

    async def list_deployments(self, request: Request, api_version: int) -> Response:
        return json_response(200, {"deployments": [self._deployment_json(d, detailed=False) for d in self.registry.deployments()]})

    async def get_deployment(self, request: Request, api_version: int) -> Response:
        deployment = self._deployment(request.path_params["deployment_id"])
        return json_response(200, self._deployment_json(deployment, detailed=True))

    async def delete_deployment(self, request: Request, api_version: int) -> Response:
        deployment_id = request.path_params["deployment_id"]
        self._deployment(deployment_id)
        force = _query_bool(request, "force")
        try:
            await self.registry.remove_deployment(deployment_id, force=force)
        except RegistryError as error:
            raise error.kind(error.message, restate_code=error.restate_code) from None
        return Response(status_code=202)

    async def update_deployment(self, request: Request, api_version: int) -> Response:
        """`PATCH /deployments/{id}`: a new URI (re-discovered), HTTP version or additional headers; the id and revisions stay."""
        deployment = self._deployment(request.path_params["deployment_id"])
        try:
            change = UpdateDeploymentRequest.model_validate(await _json_body(request))
        except ValidationError as error:
            raise BadRequest(_describe_validation(error)) from None
        endpoint = None
        if change.uri is not None or change.use_http_11 is not None:
            uri = change.uri if change.uri is not None else deployment.uri
            use_http_11 = change.use_http_11 if change.use_http_11 is not None else deployment.use_http_11
            headers = change.additional_headers if change.additional_headers is not None else deployment.additional_headers
            endpoint = await self._discover(uri, headers, use_http_11)
        try:
            updated = await self.registry.update_deployment(
                deployment.id,
                endpoint=endpoint,
                additional_headers=change.additional_headers,
                overwrite=change.overwrite,
                dry_run=change.dry_run,
            )
        except RegistryError as error:
            raise error.kind(error.message, restate_code=error.restate_code) from None
        return json_response(200, self._deployment_json(updated, detailed=True))

    async def _discover(self, uri: str, headers: dict[str, str], use_http_11: bool) -> DiscoveredEndpoint:
        await self.targets.check(uri, headers)
        try:
            return await self.discoverer(uri, headers, use_http_11)
        except InvalidUriError as error:
            raise BadRequest(f"The request field 'uri' is invalid. Reason: {error.reason}") from None
        except DiscoveryError as error:
            raise BadGateway(str(error), restate_code=error.restate_code) from None
        except SchemaError as error:
            raise BadRequest(f"discovered an invalid service definition at {uri}: {error}") from None

    def _deployment(self, deployment_id: str) -> Deployment:
        deployment = self.registry.deployment(deployment_id)
        if deployment is None:
            raise NotFound(f"The requested deployment '{deployment_id}' does not exist")
        return deployment

    # ------------------------------------------------------------ services and handlers

    async def internal_reply(self, request: Request) -> Response:
        """A reply from the node leading a partition, for a request waiting here (duro's node-to-node path)."""
        try:
            sink, reply = decode_reply(await request.body())
        except ValueError as exc:
            return json_response(400, {"message": str(exc), "restate_code": None})
        except PayloadTooLarge as error:
            return json_response(413, {"message": error.message, "restate_code": None})
        delivered = self.reply_bus.deliver(sink, reply)
        return Response(status_code=204 if delivered else 404)

    async def query(self, request: Request, api_version: int) -> Response:
        """SQL over Restate's tables, run by DataFusion off the event loop; Arrow IPC stream, or `{"rows": [...]}` for `accept: application/json`."""
        want_json = "application/json" in request.headers.get("accept", "")
        body = await _json_body(request)
        sql = body.get("query") if isinstance(body, dict) else None
        if not isinstance(sql, str) or not sql.strip():
            raise BadRequest('expected a JSON body {"query": "<SQL>"}')
        result = await self._run_query(sql)
        headers = {}
        if result.truncated:
            headers["x-duro-rows-truncated-at"] = str(self.settings.max_query_rows)
        if want_json:
            return Response(to_json(result.table), status_code=200, headers=headers, media_type="application/json")
        return Response(to_arrow_ipc(result.table), status_code=200, headers=headers, media_type=ARROW_STREAM)

    async def _run_query(self, sql: str) -> QueryResult:
        """Build the tables the query reads and run it on a query thread, within `query_timeout_ms` and `max_concurrent_queries`."""
        timeout_s = self.settings.query_timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        names = tables_read_by(sql)
        try:
            async with asyncio.timeout(timeout_s):
                await self._query_slots.acquire()
        except TimeoutError:
            raise Unavailable(f"{self.settings.max_concurrent_queries} queries are running (max_concurrent_queries); retry later") from None
        released = False
        try:
            tables = await asyncio.wait_for(
                self.partition_tables(names & PARTITION_TABLES, deadline), max(0.0, deadline - time.monotonic())
            )
            tables.update(self._registry_tables(names & REGISTRY_TABLES))
            future = asyncio.ensure_future(self.query_threads.run(run_query, sql, tables, self.settings.max_query_rows, deadline))
            done, _ = await asyncio.wait({future}, timeout=max(0.0, deadline - time.monotonic()) + _QUERY_GRACE_S)
            if not done:
                future.add_done_callback(lambda _: self._query_slots.release())  # the slot stays taken until the thread ends
                released = True
                raise QueryTimeout("the query ran past its timeout")
            return future.result()
        except QueryError as exc:
            raise BadRequest(str(exc)) from None
        except (QueryTimeout, TimeoutError):
            raise GatewayTimeout(f"the query did not finish within query_timeout_ms ({self.settings.query_timeout_ms} ms)") from None
        finally:
            if not released:
                self._query_slots.release()

    def _registry_tables(self, names: frozenset[str]) -> dict[str, pa.Table]:
        tables: dict[str, pa.Table] = {}
        if "sys_deployment" in names:
            rows = [
                {
                    "id": d.id, "ty": "http", "endpoint": d.uri, "created_at": d.created_at_ms,
                    "min_service_protocol_version": d.min_protocol_version, "max_service_protocol_version": d.max_protocol_version,
                    "services": list(d.services),
                }
                for d in self.registry.deployments()
            ]  # fmt: skip
            tables["sys_deployment"] = rows_table("sys_deployment", rows)
        if "sys_service" in names:
            rows = [
                {
                    "name": r.name,
                    "revision": r.revision,
                    "public": r.info.public,
                    "ty": r.service_type.value,
                    "deployment_id": r.deployment_id,
                }
                for r in self.registry.services()
            ]
            tables["sys_service"] = rows_table("sys_service", rows)
        return tables

    async def list_services(self, request: Request, api_version: int) -> Response:
        return json_response(200, {"services": [self._revision_json(r) for r in self.registry.services()]})

    async def get_service(self, request: Request, api_version: int) -> Response:
        return json_response(200, self._revision_json(self._service(request.path_params["service"])))

    async def list_handlers(self, request: Request, api_version: int) -> Response:
        revision = self._service(request.path_params["service"])
        handlers = [_handler_json(revision.info, h) for h in revision.handlers.values()]
        return json_response(200, {"handlers": handlers})

    async def get_handler(self, request: Request, api_version: int) -> Response:
        revision = self._service(request.path_params["service"])
        name = request.path_params["handler"]
        handler = revision.handlers.get(name)
        if handler is None:
            raise NotFound(f"The requested handler '{name}' on service '{revision.name}' does not exist")
        return json_response(200, _handler_json(revision.info, handler))

    async def modify_service(self, request: Request, api_version: int) -> Response:
        """`PATCH /services/{service}`: public, retentions, timeouts (and, beyond Restate 1.7, the retry policy) at runtime."""
        name = request.path_params["service"]
        self._service(name)
        try:
            body = ModifyServiceRequest.model_validate(await _json_body(request))
        except ValidationError as error:
            raise BadRequest(_describe_validation(error)) from None
        try:
            revision = await self.registry.modify_service(name, body.change())
        except RegistryError as error:
            raise error.kind(error.message, restate_code=error.restate_code) from None
        return json_response(200, self._revision_json(revision))

    async def modify_service_state(self, request: Request, api_version: int) -> Response:
        """`POST /services/{service}/state`: replace one object's state.

        200 once replaced; 409 if `version` is given and the state is no longer
        that version (nothing changes); 202 if an exclusive invocation holds
        the key: the patch waits in the key's inbox and its version is checked
        when it is applied. (Restate answers 202 in every case and drops a
        stale patch silently.)
        """
        name = request.path_params["service"]
        try:
            body = ModifyServiceStateRequest.model_validate(await _json_body(request))
        except ValidationError as error:
            raise BadRequest(_describe_validation(error)) from None
        revision = self.registry.service(name)
        if revision is None and body.new_state:
            raise NotFound(f"The requested service '{name}' does not exist")
        if revision is not None and revision.service_type is ServiceType.SERVICE:
            raise BadRequest(f"Cannot modify state of service '{name}': a plain service has no state")
        state = tuple(sorted((key.encode(), bytes(value)) for key, value in body.new_state.items()))
        reply = await self._append_for_key(
            body.object_key,
            lambda sink: PatchState(name, body.object_key, state, body.version, sink),
            f"state change of {name}/{body.object_key}",
        )
        return Response(status_code=202 if reply.kind is ReplyKind.ACK else 200)

    async def complete_promise(self, request: Request, api_version: int) -> Response:
        """`POST /services/{workflow}/promises` (duro's): resolve or reject a workflow's durable promise; 200, or 409 if it was completed before."""
        name = request.path_params["service"]
        try:
            body = CompletePromiseRequest.model_validate(await _json_body(request))
        except ValidationError as error:
            raise BadRequest(_describe_validation(error)) from None
        if (body.value is None) == (body.failure is None):
            raise BadRequest("expected exactly one of 'value' (the promise's value, a list of bytes) and 'failure' ({code, message})")
        revision = self._service(name)
        if revision.service_type is not ServiceType.WORKFLOW:
            raise BadRequest(f"Cannot complete a promise of service '{name}': only workflows have promises")
        if body.failure is not None:
            outcome = Outcome(failure=Failure(body.failure.code, body.failure.message))
        else:
            outcome = Outcome(value=bytes(body.value or ()))
        await self._append_for_key(
            body.object_key,
            lambda sink: CompletePromise(name, body.object_key, body.promise, outcome, sink),
            f"completion of promise '{body.promise}' of {name}/{body.object_key}",
        )
        return Response(status_code=200)

    async def _append_for_key(self, key: str, make: Callable[[IngressSink], RecordBody], what: str) -> Reply:
        """Append a record about an object's or workflow's key to the key's partition and wait for its reply; CONFLICT is 409."""
        partition = partition_of(partition_key_for_key(key), self.log.partition_count)
        reply = await self.waiter.append_to_partition_and_wait(partition, make, self.settings.admin_command_timeout_ms, what)
        if reply.kind is ReplyKind.CONFLICT:
            raise Conflict(reply.message or f"the {what} conflicts with the current state")
        return reply

    async def get_service_openapi(self, request: Request, api_version: int) -> Response:
        return json_response(200, service_openapi(self._service(request.path_params["service"]).info))

    def _service(self, name: str) -> ServiceRevision:
        revision = self.registry.service(name)
        if revision is None:
            raise NotFound(f"The requested service '{name}' does not exist")
        return revision

    # ------------------------------------------------------------ invocations

    async def invocation_command(self, request: Request, api_version: int) -> Response:
        """`PATCH /invocations/{id}/{cancel|kill|purge|purge-journal|pause|resume|restart-as-new}`, with Restate 1.7's status codes."""
        command = request.path_params["command"]
        if command not in _COMMANDS and command not in ("resume", "restart-as-new"):
            expected = ", ".join((*_COMMANDS, "resume", "restart-as-new"))
            raise NotFound(f"unknown invocation command '{command}'; expected one of {expected}")
        invocation_id = _checked_invocation_id(request.path_params["invocation_id"])
        if command == "resume":
            make = await self._resume_command(request, invocation_id)
        elif command == "restart-as-new":
            make = _restart_as_new_command(request, invocation_id)
        else:
            make = _COMMANDS[command]
        reply = await self.waiter.append_and_wait(
            invocation_id, lambda sink: make(invocation_id, sink), self.settings.admin_command_timeout_ms, command
        )
        return _command_response(command, invocation_id, reply)

    async def _resume_command(self, request: Request, invocation_id: str) -> Callable[[str, IngressSink | None], RecordBody]:
        """`resume`, optionally `?deployment=latest|keep|dp_...` (the new deployment's protocol range goes in the record)."""
        choice = request.query_params.get("deployment")
        if choice is None or choice == "keep":
            return lambda invocation_id, sink: Resume(invocation_id, sink)
        if choice == "latest":
            service = await self._service_of(invocation_id)
            deployment = self.registry.latest_deployment_for(service) if service is not None else None
            if deployment is None:
                raise BadRequest(f"The given deployment was not found when trying to resume the invocation '{invocation_id}'.")
        else:
            deployment = self.registry.deployment(choice)
            if deployment is None:
                raise BadRequest(f"The given deployment was not found when trying to resume the invocation '{invocation_id}'.")
        chosen = deployment
        return lambda invocation_id, sink: Resume(invocation_id, sink, chosen.id, chosen.min_protocol_version, chosen.max_protocol_version)

    async def _service_of(self, invocation_id: str) -> str | None:
        """The service an invocation targets, read through the invocation tables (any node's partition)."""
        result = await self._run_query(f"SELECT target_service_name FROM sys_invocation_status WHERE id = '{invocation_id}'")
        names = result.table.column(0).to_pylist() if result.table.num_rows else []
        return str(names[0]) if names else None

    async def delete_invocation(self, request: Request, api_version: int) -> Response:
        invocation_id = _checked_invocation_id(request.path_params["invocation_id"])
        mode = request.query_params.get("mode", "cancel").lower()
        make = _COMMANDS.get(mode) if mode in ("cancel", "kill", "purge") else None
        if make is None:
            raise BadRequest(f"The query parameter 'mode' is invalid. Reason: {mode!r} is not one of cancel, kill, purge")
        partition = partition_of(InvocationId.parse(invocation_id).partition_key, self.log.partition_count)
        await self.waiter.append(partition, make(invocation_id, None))
        return Response(status_code=202)

    # ------------------------------------------------------------ JSON shapes

    def _revision_json(self, revision: ServiceRevision) -> dict[str, Any]:
        return self._service_json(revision.info, revision.revision, revision.deployment_id)

    def _service_json(self, service: ServiceInfo, revision: int, deployment_id: str) -> dict[str, Any]:
        options = self.settings
        declared = service.options
        payload: dict[str, Any] = {
            "name": service.name,
            "ty": _SERVICE_TYPE_NAMES[service.service_type],
            "handlers": [_handler_json(service, h) for h in service.handlers.values()],
        }
        _put(payload, "documentation", service.documentation)
        if service.metadata:
            payload["metadata"] = service.metadata
        payload.update(
            {
                "deployment_id": deployment_id,
                "revision": revision,
                "public": service.public,
                "idempotency_retention": format_friendly_ms(
                    _or(declared.idempotency_retention_ms, options.default_idempotency_retention_ms)
                ),
            }
        )
        if service.service_type is ServiceType.WORKFLOW:
            payload["workflow_completion_retention"] = format_friendly_ms(
                _or(_run_completion_retention(service), options.default_workflow_completion_retention_ms)
            )
        journal_retention_ms = _or(declared.journal_retention_ms, options.default_journal_retention_ms)
        if journal_retention_ms:
            payload["journal_retention"] = format_friendly_ms(journal_retention_ms)
        defaults = self.service_defaults
        for key, value in (
            ("inactivity_timeout", _or(declared.inactivity_timeout_ms, defaults.inactivity_timeout_ms)),
            ("abort_timeout", _or(declared.abort_timeout_ms, defaults.abort_timeout_ms)),
        ):
            if value:
                payload[key] = format_friendly_ms(value)
        payload["enable_lazy_state"] = bool(declared.enable_lazy_state)
        payload["retry_policy"] = _service_retry_json(declared.retry_policy, defaults.retry_policy)
        return payload

    def _deployment_json(self, deployment: Deployment, detailed: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": deployment.id,
            "uri": deployment.uri,
            "protocol_type": _PROTOCOL_TYPES.get(deployment.protocol_mode, "RequestResponse"),
            "http_version": "HTTP/1.1" if deployment.use_http_11 else "HTTP/2.0",
        }
        if deployment.additional_headers:
            payload["additional_headers"] = deployment.additional_headers
        if deployment.metadata:
            payload["metadata"] = deployment.metadata
        payload.update(
            {
                "created_at": format_rfc3339_ms(deployment.created_at_ms),
                "min_protocol_version": deployment.min_protocol_version,
                "max_protocol_version": deployment.max_protocol_version,
            }
        )
        _put(payload, "sdk_version", deployment.sdk_version)
        if detailed:
            payload["services"] = self._services_of(deployment)
        else:
            payload["services"] = [{"name": name, "revision": deployment.service_revisions[name]} for name in deployment.services]
        return payload

    def _services_of(self, deployment: Deployment) -> list[dict[str, Any]]:
        return [self._service_json(s, deployment.service_revisions[s.name], deployment.id) for s in deployment.services.values()]


# ---------------------------------------------------------------- commands

_COMMANDS: dict[str, Callable[[str, IngressSink | None], RecordBody]] = {
    "cancel": lambda invocation_id, sink: Cancel(invocation_id, sink),
    "kill": lambda invocation_id, sink: Kill(invocation_id, sink),
    "purge": lambda invocation_id, sink: Purge(invocation_id, sink),
    "purge-journal": lambda invocation_id, sink: PurgeJournal(invocation_id, sink),
    "pause": lambda invocation_id, sink: Pause(invocation_id, sink),
}

_STATUS_OF_REPLY: Final = {
    ReplyKind.ACK: 200,
    ReplyKind.DONE: 200,
    ReplyKind.CONFLICT: 409,
    ReplyKind.NOT_READY: 425,
    ReplyKind.GONE: 410,
    ReplyKind.UNSUPPORTED: 422,
    ReplyKind.INVALID: 400,
}
"""Restate 1.7's status for each outcome of an invocation command (cancel and pause answer 202 when they act later)."""


def _restart_as_new_command(request: Request, invocation_id: str) -> Callable[[str, IngressSink | None], RecordBody]:
    start_from = request.query_params.get("from", "0")
    if start_from != "0":
        raise BadRequest(
            f"The query parameter 'from' is invalid. Reason: duro restarts an invocation from its input only (from=0), got {start_from!r}",
        )
    if request.query_params.get("deployment") not in (None, "latest"):
        raise BadRequest("The query parameter 'deployment' is invalid. Reason: only usable together with 'from'")
    new_invocation_id = str(InvocationId.random(InvocationId.parse(invocation_id).partition_key))
    return lambda invocation_id, sink: RestartAsNew(invocation_id, new_invocation_id, sink)


def _command_response(command: str, invocation_id: str, reply: Reply) -> Response:
    kind = reply.kind
    if kind is ReplyKind.NOT_FOUND:
        raise NotFound(f"The requested invocation '{invocation_id}' does not exist")
    status = _STATUS_OF_REPLY.get(kind)
    if status is None:
        raise Internal(f"unexpected reply {kind.name} to {command} of invocation '{invocation_id}'")
    if status >= 400:
        raise kind_of_status(status)(reply.message or f"The invocation '{invocation_id}' cannot be the target of {command} now.")
    if kind is ReplyKind.ACK and command in ("cancel", "pause"):
        status = 202  # accepted: the handler or the invoker acts on it next
    if command == "restart-as-new":
        return json_response(status, {"new_invocation_id": reply.new_invocation_id})
    return Response(status_code=status)


# ---------------------------------------------------------------- helpers


def _endpoint(kind: str, handler: Handler, api_version: int) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request, api_version)
        except ApiError as error:
            response = json_response(error.status, {"message": error.message, "restate_code": error.restate_code})
        except Exception as error:
            response = _unexpected(request, error)
        metrics.observe_admin(kind, response.status_code)
        return response

    return endpoint


def _unexpected(request: Request, error: Exception) -> Response:
    """An error no handler expected: 507 for a full disk (nothing changed), else 500 without its text (logged with the traceback)."""
    if isinstance(error, OSError) and is_disk_full(error):
        full = InsufficientStorage("the node's disk is full: nothing was changed; retry once space is freed")
        return json_response(full.status, {"message": full.message, "restate_code": None})
    if isinstance(error, ClientDisconnect):
        log.info("admin request %s %s: the client went away before sending the whole body", request.method, request.url.path)
        return json_response(400, {"message": "the client went away before sending the whole body", "restate_code": None})
    log.exception("admin request %s %s failed", request.method, request.url.path)
    message = f"the admin API failed unexpectedly on {request.method} {request.url.path}; the node's log has the traceback"
    return json_response(500, {"message": message, "restate_code": None})


def error_body(status: int, message: str) -> bytes:
    """The admin API's error body `{"message", "restate_code"}` (also for requests refused before they reach it, e.g. 431)."""
    return json.dumps({"message": message, "restate_code": None}, separators=(",", ":")).encode()


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")).encode(), status_code=status, headers=headers, media_type="application/json")


async def _json_body(request: Request) -> Any:
    """The JSON body of an admin request; its content-type must say JSON, as Restate's admin API requires.

    The check also keeps a web page from driving the admin API: a browser sends a
    cross-site `text/plain` or form POST without asking, but not `application/json`.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(f"expected a request body with content-type application/json, got {media_type or 'none'}")
    raw = await request.body()
    try:
        return parse_json(raw)
    except ValueError as error:
        raise BadRequest(f"The request body is not JSON: {error}") from None


def _describe_validation(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    return f"The request field '{field}' is invalid. Reason: {first['msg']}"


def _register_status(outcome: RegisterOutcome, api_version: int, deployment_id: str) -> int:
    if outcome is RegisterOutcome.CREATED:
        return 201
    legacy = api_version == 2
    if outcome is RegisterOutcome.UNCHANGED and legacy:
        raise Conflict(f"Conflict: deployment {deployment_id} already exists")
    if outcome is RegisterOutcome.OVERWRITTEN and legacy:
        return 201
    return 200


def _query_bool(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(f"The query parameter '{name}' is invalid. Reason: expected true or false, got {value!r}")


def _checked_invocation_id(text: str) -> str:
    try:
        InvocationId.parse(text)
    except ValueError as error:
        raise BadRequest(f"The request field 'invocation_id' is invalid. Reason: {error}") from None
    return text


def _handler_json(service: ServiceInfo, handler: HandlerInfo) -> dict[str, Any]:
    options = handler.options
    payload: dict[str, Any] = {"name": handler.name}
    if handler.kind is not None:
        payload["ty"] = _HANDLER_KIND_NAMES[handler.kind]
    _put(payload, "documentation", handler.documentation)
    if handler.metadata:
        payload["metadata"] = handler.metadata
    for key, value in (
        ("idempotency_retention", options.idempotency_retention_ms),
        ("journal_retention", options.journal_retention_ms),
        ("inactivity_timeout", options.inactivity_timeout_ms),
        ("abort_timeout", options.abort_timeout_ms),
    ):
        if value is not None:
            payload[key] = format_friendly_ms(value)
    _put(payload, "enable_lazy_state", options.enable_lazy_state)
    payload["public"] = service.handler_public(handler)
    payload["input_description"] = describe_input(handler.input)
    payload["output_description"] = describe_output(handler.output)
    _put(payload, "input_json_schema", handler.input.json_schema)
    _put(payload, "output_json_schema", handler.output.json_schema)
    payload["retry_policy"] = _handler_retry_json(options.retry_policy)
    return payload


def _service_retry_json(policy: RetryPolicy, node_policy: AppliedRetryPolicy) -> dict[str, Any]:
    """A service's declared retry policy, each field it leaves unset filled from the node's policy."""
    on_max_attempts = policy.on_max_attempts or node_policy.on_max_attempts.value.upper()
    return {
        "initial_interval": format_friendly_ms(_or(policy.initial_interval_ms, node_policy.initial_interval_ms)),
        "exponentiation_factor": policy.exponentiation_factor if policy.exponentiation_factor is not None else node_policy.factor,
        "max_attempts": policy.max_attempts if policy.max_attempts else node_policy.max_attempts,
        "max_interval": format_friendly_ms(_or(policy.max_interval_ms, node_policy.max_interval_ms)),
        "on_max_attempts": _ON_MAX_ATTEMPTS.get(on_max_attempts, "Pause"),
    }


def _handler_retry_json(policy: RetryPolicy) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if policy.initial_interval_ms is not None:
        payload["initial_interval"] = format_friendly_ms(policy.initial_interval_ms)
    _put(payload, "exponentiation_factor", policy.exponentiation_factor)
    if policy.max_attempts:
        payload["max_attempts"] = policy.max_attempts
    if policy.max_interval_ms is not None:
        payload["max_interval"] = format_friendly_ms(policy.max_interval_ms)
    if policy.on_max_attempts is not None:
        payload["on_max_attempts"] = _ON_MAX_ATTEMPTS.get(policy.on_max_attempts, "Pause")
    return payload


def _run_completion_retention(service: ServiceInfo) -> int | None:
    for handler in service.handlers.values():
        if handler.kind is HandlerKind.WORKFLOW:
            return handler.options.workflow_completion_retention_ms
    return None


def _put(payload: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        payload[key] = value


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
