"""The HTTP ingress (port 8080): turns Restate ingress requests into log records and answers from partition replies.

Routes (Restate's): `/{service}/{handler}[/send]`, `/{object|workflow}/{key}/{handler}[/send]`
(GET or POST), `/restate/invocation/{id}/attach|output`,
`/restate/invocation/{service}[/{key}]/{handler}/{idempotencyKey}/attach|output`,
`/restate/workflow/{name}/{key}/attach|output`, `/restate/attach|output/{id}`,
`POST /restate/attach|output` with a JSON target, `POST /restate/awakeables/{id}/resolve|reject`
(alias `/restate/a/...`) and `GET /restate/health`.

A request that waits registers on the `ReplyBus`, appends its record with the
sink to the partition of the invocation id, awaits the reply (bounded by a
timeout) and releases the sink. Paths are parsed by hand, as Restate does,
because how many segments a service path has depends on the service's type.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from opentelemetry.trace import Tracer
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ingress import metrics
from ingress.auth import AUTHORIZATION, BearerToken, refuse, unauthorized_message
from ingress.durations import format_rfc3339_ms, parse_duration_ms
from ingress.errors import (
    ApiError,
    BadRequest,
    Conflict,
    GatewayTimeout,
    InsufficientStorage,
    Internal,
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
)
from ingress.json_input import parse_json
from ingress.local_partitions import LocalPartitionKeys
from ingress.registry import DerivedCache, Registry, ResolvedHandler
from ingress.schema import InputError, OutputRules, validate_input
from ingress.settings import IngressSettings
from ingress.tracing import TRACE_HEADERS, IngressTracing, trace_headers_of
from protocol.error_codes import InvocationErrorCode as Code
from protocol.ids import InvocationId, is_legacy_awakeable_id, parse_awakeable_id
from protocol.retention import InvocationRetention
from protocol.routing import (
    idempotent_invocation_id,
    keyed_or_random_id,
    partition_key_of,
    workflow_invocation_id,
)
from wal.disk_space import DiskSpace
from wal.log import AppendNotSentError, AppendTooLargeError, Log, LogClosedError, LogError, LogFullError
from wal.partitioner import partition_of
from wal.records import (
    DEFAULT_RETRY_POLICY,
    Attach,
    Envelope,
    Failure,
    HandlerKind,
    IngressSink,
    Invoke,
    Outcome,
    Record,
    RecordBody,
    RetryPolicy,
    ServiceType,
    Signal,
    Target,
    compiled_replace,
    encode_record,
)
from wal.replies import NodeStopping, Reply, ReplyBus, ReplyKind, TooManyWaitingRequests


@dataclass(frozen=True, slots=True)
class _InvokePolicy:
    """What an Invoke of one handler carries besides its request: its retry policy, and its retention without and with an idempotency key."""

    retry_policy: RetryPolicy
    retention: InvocationRetention
    keyed_retention: InvocationRetention


_replace_invoke = compiled_replace(Invoke)  # the request's Invoke with its sink or start time: 6 -> 1 µs per request

JSON_TYPE = "application/json"
X_RESTATE_ID = "x-restate-id"
X_RESTATE_ERROR_SOURCE = "x-restate-error-source"
IDEMPOTENCY_KEY = "idempotency-key"
IDEMPOTENCY_EXPIRES = "idempotency-expires"
X_RESTATE_INGRESS_PATH = "x-restate-ingress-path"
_NOT_FORWARDED = frozenset({b"connection", b"host", b"idempotency-key", b"idempotency-expires"})
_NOT_FORWARDED_WITH_TOKEN = _NOT_FORWARDED | {AUTHORIZATION}  # the ingress token is the node's credential, not the service's
HEALTH_PATHS = frozenset({"/restate/health"})
TOKEN_CHECKED_SCOPE_KEY = "duro.token_checked"  # set in the ASGI scope when the ingress token was required and given
logger = logging.getLogger("duro.ingress")
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_MIN_SEGMENTS, _MAX_SEGMENTS = 2, 7
_KIND_SCOPE_KEY = "duro.route_kind"  # set in the ASGI scope once the route kind is known, for metrics
_VERB_KINDS = {"health": "health", "awakeables": "awakeable", "a": "awakeable", "attach": "attach", "output": "output"}

_BAD_SERVICE_PATH = "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
_BAD_INVOCATION_PATH = (
    "bad path, expected either /restate/invocation/:invocation_id/output or /restate/invocation/:invocation_id/attach"
    " or /restate/invocation/:invocation_target/:idempotency_key/output or"
    " /restate/invocation/:invocation_target/:idempotency_key/attach"
)
_BAD_WORKFLOW_PATH = (
    "bad path, expected either /restate/workflow/:workflow_name/:workflow_key/output or"
    " /restate/workflow/:workflow_name/:workflow_key/attach"
)
_BAD_AWAKEABLE_PATH = "bad path, expected either /restate/awakeables/:id/resolve or /restate/awakeables/:id/reject"


@dataclass(frozen=True, slots=True)
class _Lookup:
    """What an attach/output request asks for: an invocation id and how to label its output."""

    invocation_id: str
    output_rules: OutputRules | None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def build_ingress_app(
    log: Log,
    registry: Registry,
    reply_bus: ReplyBus,
    settings: IngressSettings | None = None,
    default_retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    tracer: Tracer | None = None,
) -> IngressApp:
    """The ingress ASGI app; serve it on port 8080. `default_retry_policy` is the node's, written into each Invoke.

    With a `tracer`, each request gets a span that continues the client's W3C trace context (`ingress/tracing.py`).
    """
    chosen = settings or IngressSettings()
    ingress = Ingress(log, registry, reply_bus, chosen, default_retry_policy)
    if tracer is not None:
        ingress.tracing = IngressTracing(tracer)
    token = None if chosen.ingress_token is None else BearerToken(chosen.ingress_token.get_secret_value(), HEALTH_PATHS)
    return IngressApp(ingress, token)


class IngressApp:
    """The ingress as a bare ASGI app: every path goes to `Ingress.handle`, with no router or middleware stack in between.

    Measured in-process, this saves about 11 µs per request over a Starlette
    app with one catch-all route (GET /restate/health: 24 µs -> 13 µs). An
    unexpected exception answers 500 and is logged. With a `token`, a request
    without it is answered 401 before anything is read (`ingress/auth.py`).
    """

    def __init__(self, ingress: Ingress, token: BearerToken | None = None) -> None:
        self.ingress = ingress
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self.token is not None:
            if not self.token.admits(scope):
                await refuse(send, error_body(401, unauthorized_message("ingress")))
                return
            scope[TOKEN_CHECKED_SCOPE_KEY] = True
        request = Request(scope, receive)
        try:
            response = await self.ingress.handle(request)
        except Exception:
            logger.exception("ingress request %s %s failed", scope.get("method"), scope.get("path"))
            message = f"the ingress failed unexpectedly on {scope.get('method')} {scope.get('path')}; the node's log has the traceback"
            response = error_response(500, message, None)
        await response(scope, receive, send)


class Ingress:
    """Request handling of the ingress; one instance per app."""

    def __init__(
        self, log: Log, registry: Registry, reply_bus: ReplyBus, settings: IngressSettings, default_retry_policy: RetryPolicy
    ) -> None:
        self.log = log
        self.registry = registry
        self.reply_bus = reply_bus
        self.settings = settings
        self.default_retry_policy = default_retry_policy
        self.waiter = ReplyWaiter(log, reply_bus)
        self._invoke_policies: DerivedCache[ResolvedHandler, _InvokePolicy] = DerivedCache(self._invoke_policy_of)
        self.refusal: str | None = None
        self.tracing: IngressTracing | None = None
        self.partitions_without_leader: Callable[[], list[int]] = list
        """The owned partitions this node does not lead with working leader tasks; any makes the node not ready (set by the node)."""
        self.disk: DiskSpace | None = None  # set by the node: new invocations are refused (507) while its disk is low
        self.local_keys = LocalPartitionKeys(log.partition_count)
        """Where fresh unkeyed invocations go: the node tells it the partitions this process owns (`own`), so they stay here."""

    def stop_accepting(self, reason: str) -> None:
        """From now on answer every request, health included, 503 with `Retry-After` naming `reason` (the node drains).

        Nothing is recorded for a refused request, so a client can retry it on
        another node; requests already waiting for replies still get them.
        """
        self.refusal = reason

    async def handle(self, request: Request) -> Response:
        if self.tracing is not None:
            return await self.tracing.traced(request, self._handle, lambda: request.scope.get(_KIND_SCOPE_KEY, "other"))
        return await self._handle(request)

    async def _handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            if self.refusal is not None:
                raise Unavailable(f"{self.refusal}; nothing was recorded, retry the request on another node", retry_after_s=1)
            kind, response = await self._route(request)
        except ApiError as error:
            kind = request.scope.get(_KIND_SCOPE_KEY, "other")
            response = error_response(error.status, error.message, error.invocation_id)
            if error.retry_after_s is not None:
                response.headers["retry-after"] = str(error.retry_after_s)
        except ClientDisconnect:  # nothing was recorded; the answer has nobody to go to
            logger.info("ingress request %s %s: the client went away before sending the whole body", request.method, request.url.path)
            kind = request.scope.get(_KIND_SCOPE_KEY, "other")
            response = error_response(400, "the client went away before sending the whole body")
        metrics.observe_ingress(kind, response.status_code, time.perf_counter() - started)
        return response

    # ------------------------------------------------------------ routing

    async def _route(self, request: Request) -> tuple[str, Response]:
        path = _raw_path(request)
        segments = path.split("/")[1:]
        if not _MIN_SEGMENTS <= len(segments) <= _MAX_SEGMENTS:
            raise BadRequest(f"bad path: {path}")
        if segments[0] == "restate":
            return await self._route_restate(request, segments[1:])
        if segments[0] == "openapi":
            raise NotFound("not found")
        return await self._invoke(request, segments)

    async def _route_restate(self, request: Request, segments: list[str]) -> tuple[str, Response]:
        verb, rest = segments[0], segments[1:]
        request.scope[_KIND_SCOPE_KEY] = _VERB_KINDS.get(verb, "other")
        if verb == "health":
            return "health", self._health(request)
        if verb in ("awakeables", "a"):
            return "awakeable", await self._awakeable(request, rest)
        if verb == "invocation":
            lookup, kind = self._invocation_lookup(rest)
            return kind, await self._attach_or_output(request, lookup, kind)
        if verb == "workflow":
            lookup, kind = self._workflow_lookup(rest)
            return kind, await self._attach_or_output(request, lookup, kind)
        if verb in ("attach", "output"):
            return verb, await self._attach_or_output_verb(request, verb, rest)
        if verb in ("call", "send"):
            if not rest or not rest[0]:
                raise BadRequest(
                    f"bad path, expected /restate/{verb}/:service-name/:handler or /restate/{verb}/:object-name/:object-key/:handler"
                )
            return await self._invoke(request, rest, forced_kind=verb)
        raise NotFound("not found")

    def _health(self, request: Request) -> Response:
        """Readiness: 200 while every partition this node owns has a working leader here, else 503 naming those that do not."""
        if request.method != "GET":
            raise MethodNotAllowed("method not allowed")
        names = [revision.name for revision in self.registry.services()]
        unready = self.partitions_without_leader()
        if unready:
            message = f"not ready: partitions {unready} have no working leader on this node (catching up, or re-claimed after a failure)"
            return json_response(503, {"message": message, "partitions_without_leader": unready, "services": names})
        return json_response(200, {"services": names})

    # ------------------------------------------------------------ invoking

    async def _invoke(self, request: Request, segments: list[str], forced_kind: str | None = None) -> tuple[str, Response]:
        resolved, key, is_send = self._target(segments, forced_kind)
        request.scope[_KIND_SCOPE_KEY] = "send" if is_send else "call"
        if self.disk is not None and self.disk.low:
            raise InsufficientStorage(f"{self.disk.describe()}; nothing was recorded, retry later", retry_after_s=10)
        idempotency_key = request.headers.get(IDEMPOTENCY_KEY)
        is_run = resolved.service_type is ServiceType.WORKFLOW and resolved.kind is HandlerKind.WORKFLOW
        if idempotency_key is not None and is_run:
            raise BadRequest(
                "cannot use the idempotency key with workflow handlers. The handler invocation will already be"
                " idempotent by the workflow key itself.",
            )
        if request.method not in ("GET", "POST"):
            raise MethodNotAllowed("method not allowed")
        body = await read_body(request, self.settings.max_body_bytes)
        try:
            validate_input(resolved.handler.input, request.headers.get("content-type"), body)
        except InputError as error:
            raise BadRequest(f"input validation error: {error}") from None
        delay_ms = _parse_delay(request.query_params.multi_items())
        if delay_ms is not None and not is_send:
            raise BadRequest("cannot use the delay query parameter with calls. The delay is supported only with sends")
        service, handler = resolved.service.name, resolved.handler.name
        policy = self._invoke_policies.get((service, handler), resolved)
        retention = policy.keyed_retention if idempotency_key is not None else policy.retention
        invoke = Invoke(
            invocation_id=_invocation_id(service, key, handler, idempotency_key, is_run, self.local_keys),
            target=Target(service, handler, key, resolved.service_type, resolved.kind),
            body=body,
            headers=_forwarded_headers(request),
            idempotency_key=idempotency_key,
            completion_retention_ms=retention.completion_ms,
            retry_policy=policy.retry_policy,
            journal_retention_ms=retention.journal_ms,
            fail_on_deadlock=self.settings.fail_deadlocked_calls,
        )
        if is_send:
            return "send", await self._send(invoke, delay_ms)
        return "call", await self._call(invoke, resolved.handler.output, idempotency_key is not None or is_run)

    def _invoke_policy_of(self, resolved: ResolvedHandler) -> _InvokePolicy:
        defaults = self.settings.retention_defaults
        return _InvokePolicy(
            resolved.retry_policy(self.default_retry_policy), resolved.retention(defaults, False), resolved.retention(defaults, True)
        )

    def _target(self, segments: list[str], forced_kind: str | None) -> tuple[ResolvedHandler, str | None, bool]:
        """(handler, key, is_send) named by a service path; NotFound or BadRequest naming what is unknown or malformed."""
        service_name = segments[0]
        revision = self.registry.service(service_name)
        if revision is None:
            raise NotFound(f"service '{service_name}' not found, make sure to register the service before calling it.")
        keyed = revision.service_type is not ServiceType.SERVICE
        key, handler_name, is_send = _parse_service_path(segments[1:], keyed, forced_kind)
        resolved = self.registry.resolve(service_name, handler_name)
        if resolved is None:
            raise NotFound(
                f"the service '{service_name}' exists, but the handler '{handler_name}' was not found, check that the"
                " handler exists in the latest registered service version.",
            )
        if not resolved.public:
            raise BadRequest("the invoked service is not public")
        return resolved, key, is_send

    async def _call(self, invoke: Invoke, output: OutputRules, include_expiry: bool) -> Response:
        reply = await self.waiter.append_and_wait(
            invoke.invocation_id,
            lambda sink: _replace_invoke(invoke, response_sink=sink),
            self.settings.call_timeout_ms,
            "call",
            nudge=lambda sink: Attach(invoke.invocation_id, sink, block=True),
            nudge_interval_ms=self.settings.reply_nudge_interval_ms,
        )
        return outcome_response(reply, invoke.invocation_id, output, include_expiry)

    async def _send(self, invoke: Invoke, delay_ms: int | None) -> Response:
        """Append the Invoke; answer 202 once it is durable.

        A send with a fresh random id is accepted as soon as it is in the log.
        A send that may be a duplicate (idempotency key, workflow run) waits
        for the partition to say whether it was new.
        """
        execute_at_ms = now_ms() + delay_ms if delay_ms else None
        previously_accepted = False
        if invoke.idempotency_key is None and not invoke.target.is_workflow_run:
            partition = partition_of(partition_key_of(invoke.invocation_id), self.log.partition_count)
            await self.waiter.append(partition, _replace_invoke(invoke, execute_at_ms=execute_at_ms), invoke.invocation_id)
        else:
            reply = await self.waiter.append_and_wait(
                invoke.invocation_id,
                lambda sink: _replace_invoke(invoke, submit_sink=sink, execute_at_ms=execute_at_ms),
                self.settings.submit_timeout_ms,
                "send",
                nudge=lambda sink: Attach(invoke.invocation_id, sink, block=False),
                nudge_interval_ms=self.settings.reply_nudge_interval_ms,
            )
            if reply.kind not in (ReplyKind.SUBMITTED, ReplyKind.NOT_READY, ReplyKind.OUTCOME):
                return outcome_response(reply, invoke.invocation_id, None, False)
            previously_accepted = reply.kind is ReplyKind.SUBMITTED and reply.previously_accepted
        payload: dict[str, Any] = {"invocationId": invoke.invocation_id}
        if execute_at_ms is not None:
            payload["executionTime"] = format_rfc3339_ms(execute_at_ms)
        payload["status"] = "PreviouslyAccepted" if previously_accepted else "Accepted"
        return json_response(202, payload, {X_RESTATE_ID: invoke.invocation_id})

    # ------------------------------------------------------------ attach / output

    def _invocation_lookup(self, segments: list[str]) -> tuple[_Lookup, str]:
        if len(segments) < 2:
            raise BadRequest(_BAD_INVOCATION_PATH)
        if len(segments) == 2:
            return _Lookup(_checked_invocation_id(segments[0]), None), _attach_kind(segments[1])
        service_name = segments[0]
        revision = self.registry.service(service_name)
        if revision is None:
            raise NotFound(f"service '{service_name}' not found, make sure to register the service before calling it.")
        keyed = revision.service_type is not ServiceType.SERVICE
        expected = 5 if keyed else 4
        if len(segments) != expected:
            raise BadRequest(_BAD_INVOCATION_PATH)
        key = _decode_key(segments[1]) if keyed else None
        handler_name, idempotency_key, verb = segments[-3], segments[-2], segments[-1]
        invocation_id = idempotent_invocation_id(service_name, key, handler_name, unquote(idempotency_key))
        resolved = self.registry.resolve(service_name, handler_name)
        output = resolved.handler.output if resolved is not None else None
        return _Lookup(invocation_id, output), _attach_kind(verb)

    def _workflow_lookup(self, segments: list[str]) -> tuple[_Lookup, str]:
        if len(segments) != 3:
            raise BadRequest(_BAD_WORKFLOW_PATH)
        name, key, verb = segments[0], _decode_key(segments[1]), segments[2]
        return _Lookup(workflow_invocation_id(name, key), self._run_output(name)), _attach_kind(verb)

    def _run_output(self, workflow: str) -> OutputRules | None:
        revision = self.registry.service(workflow)
        if revision is None:
            return None
        for handler in revision.handlers.values():
            if handler.kind is HandlerKind.WORKFLOW:
                return handler.output
        return None

    async def _attach_or_output_verb(self, request: Request, verb: str, segments: list[str]) -> Response:
        if len(segments) == 1:
            return await self._attach_or_output(request, _Lookup(_checked_invocation_id(segments[0]), None), verb)
        if segments:
            raise BadRequest("bad path, expected /restate/attach/:invocation_id or /restate/output/:invocation_id")
        if request.method != "POST":
            raise MethodNotAllowed("method not allowed")
        body = await read_body(request, self.settings.max_body_bytes)
        return await self._lookup_and_answer(self._lookup_from_target(body), verb == "attach")

    def _lookup_from_target(self, body: bytes) -> _Lookup:
        try:
            target = parse_json(body)
        except ValueError as error:
            raise BadRequest(f"invalid request body: {error}") from None
        if not isinstance(target, dict):
            raise BadRequest("invalid request body: expected a JSON object with a 'target' field")
        return self._lookup_for(target)

    def _lookup_for(self, target: dict[str, Any]) -> _Lookup:
        kind = _text_field(target, "target")
        if kind == "invocation":
            return _Lookup(_checked_invocation_id(_text_field(target, "invocationId")), None)
        if kind == "workflow":
            name, key = _text_field(target, "workflowName"), _text_field(target, "workflowKey")
            return _Lookup(workflow_invocation_id(name, key), self._run_output(name))
        if kind == "idempotentInvocation":
            service, handler = _text_field(target, "service"), _text_field(target, "handler")
            service_key = _optional_text_field(target, "key")
            invocation_id = idempotent_invocation_id(service, service_key, handler, _text_field(target, "idempotencyKey"))
            resolved = self.registry.resolve(service, handler)
            return _Lookup(invocation_id, resolved.handler.output if resolved else None)
        raise BadRequest(f"invalid request body: unknown target {kind!r}; expected invocation, workflow or idempotentInvocation")

    async def _attach_or_output(self, request: Request, lookup: _Lookup, kind: str) -> Response:
        if request.method != "GET":
            raise MethodNotAllowed("method not allowed")
        return await self._lookup_and_answer(lookup, kind == "attach")

    async def _lookup_and_answer(self, lookup: _Lookup, block: bool) -> Response:
        timeout_ms = self.settings.call_timeout_ms if block else self.settings.submit_timeout_ms
        reply = await self.waiter.append_and_wait(
            lookup.invocation_id,
            lambda sink: Attach(lookup.invocation_id, sink, block),
            timeout_ms,
            "attach" if block else "output",
            nudge=lambda sink: Attach(lookup.invocation_id, sink, block),
            nudge_interval_ms=self.settings.reply_nudge_interval_ms,
        )
        output = lookup.output_rules
        if output is None and reply.service is not None and reply.handler is not None:
            resolved = self.registry.resolve(reply.service, reply.handler)
            output = resolved.handler.output if resolved is not None else None
        return outcome_response(reply, lookup.invocation_id, output, include_expiry=True)

    # ------------------------------------------------------------ awakeables

    async def _awakeable(self, request: Request, segments: list[str]) -> Response:
        if len(segments) != 2 or segments[1] not in ("resolve", "reject"):
            raise (BadRequest if len(segments) != 2 else NotFound)(_BAD_AWAKEABLE_PATH)
        if request.method != "POST":
            raise MethodNotAllowed("method not allowed")
        awakeable_id = segments[0]
        invocation_id, signal_index = _parse_awakeable(awakeable_id)
        body = await read_body(request, self.settings.max_body_bytes)
        if segments[1] == "resolve":
            outcome = Outcome(value=body)
        else:
            outcome = Outcome(failure=Failure(Code.INTERNAL, body.decode("utf-8", errors="replace")))
        signal = Signal(str(invocation_id), signal_index, None, outcome)
        await self.waiter.append(partition_of(invocation_id.partition_key, self.log.partition_count), signal)
        return Response(status_code=202)


class ReplyWaiter:
    """Appends records for waiting requests and awaits their replies on the bus."""

    def __init__(self, log: Log, reply_bus: ReplyBus) -> None:
        self.log = log
        self.reply_bus = reply_bus

    async def append(self, partition: int, body: RecordBody, invocation_id: str | None = None) -> None:
        """Append one record; PayloadTooLarge if it is larger than the log takes, InsufficientStorage on a full disk, Unavailable (saying whether a retry is safe) if the log fails."""
        entry = encode_record(Record(Envelope(now_ms()), body))
        try:
            await self.log.append(partition, [entry])
        except LogFullError:
            raise InsufficientStorage(
                "the node's disk is full: the request was not recorded; retry once space is freed",
                invocation_id,
                retry_after_s=10,
            ) from None
        except AppendTooLargeError:
            raise PayloadTooLarge(
                f"the request, {len(entry)} bytes as a log record, is larger than the log takes"
                f" (max_append_bytes={self.log.max_append_bytes}); nothing was recorded",
                invocation_id,
            ) from None
        except (LogClosedError, AppendNotSentError) as error:
            reason = (
                "the node is shutting down"
                if isinstance(error, LogClosedError)
                else "the worker process owning its partition is restarting"
            )
            raise Unavailable(f"{reason}; the request was not recorded, retrying it is safe", invocation_id) from None
        except LogError as error:  # AppendOutcomeUnknownError among them: a Kafka acknowledgement that did not come, a lost worker answer
            logger.warning("append to partition %d for invocation %s has an unknown outcome: %s", partition, invocation_id, error)
            raise Unavailable(
                "the node's log did not confirm the request (its acknowledgement did not come in time, or the worker process"
                " owning its partition did not answer); it may or may not have been recorded. If the request has an"
                " 'idempotency-key', it can be safely retried; otherwise look it up before submitting it again, as"
                " submitting it again may execute it twice",
                invocation_id,
            ) from None

    async def append_and_wait(
        self,
        invocation_id: str,
        make_body: Callable[[IngressSink], RecordBody],
        timeout_ms: int,
        what: str,
        nudge: Callable[[IngressSink], RecordBody] | None = None,
        nudge_interval_ms: int = 5_000,
    ) -> Reply:
        """Register on the reply bus, append `make_body(sink)` to the invocation's partition, await the reply.

        A reply can be lost without losing anything durable: the partition's
        leader may die after applying the record, or the node-to-node post may
        fail. So while no reply has come, every `nudge_interval_ms` the waiter
        appends `nudge(sink)` (an Attach), which makes the current leader
        answer again.

        Raises TooManyRequests when too many requests wait, Unavailable when the
        append fails or the node stops before the reply came, 504 when no
        reply comes within `timeout_ms` (in both last cases the record stays
        appended and takes effect). The sink is released on every exit,
        cancellation included.
        """
        sink, future = self._register()
        try:
            partition = partition_of(partition_key_of(invocation_id), self.log.partition_count)
            await self.append(partition, make_body(sink), invocation_id)
            deadline = time.monotonic() + timeout_ms / 1000
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GatewayTimeout(
                        f"no answer for the {what} of invocation {invocation_id} within {timeout_ms} ms; the request was"
                        f" recorded and goes on: attach with GET /restate/invocation/{invocation_id}/attach",
                        invocation_id,
                    )
                wait_s = remaining if nudge is None else min(remaining, nudge_interval_ms / 1000)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), wait_s)
                except NodeStopping:
                    raise Unavailable(
                        f"the node is shutting down before the {what} of invocation {invocation_id} had an answer; the request"
                        f" was recorded and goes on: attach with GET /restate/invocation/{invocation_id}/attach once a node serves it",
                        invocation_id,
                    ) from None
                except TimeoutError:
                    if nudge is not None and time.monotonic() < deadline:
                        try:
                            await self.append(partition, nudge(sink), invocation_id)
                        except Unavailable as error:  # the request itself is recorded: wait on, and nudge again later
                            logger.info("could not nudge invocation %s for its answer: %s", invocation_id, error)
        finally:
            self.reply_bus.release(sink)

    async def append_to_partition_and_wait(
        self, partition: int, make_body: Callable[[IngressSink], RecordBody], timeout_ms: int, what: str
    ) -> Reply:
        """Append `make_body(sink)` to `partition` and await the reply: for records about a key (a state patch, a promise), not an invocation.

        Raises TooManyRequests or Unavailable as `append_and_wait` does, and
        GatewayTimeout when no reply comes within `timeout_ms` (the record
        stays appended and takes effect). The sink is released on every exit,
        cancellation included.
        """
        sink, future = self._register()
        try:
            await self.append(partition, make_body(sink))
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout_ms / 1000)
            except NodeStopping:
                raise Unavailable(f"the node is shutting down before the {what} had an answer; it was recorded and takes effect") from None
            except TimeoutError:
                raise GatewayTimeout(f"no answer for the {what} within {timeout_ms} ms; it was recorded and takes effect") from None
        finally:
            self.reply_bus.release(sink)

    def _register(self) -> tuple[IngressSink, asyncio.Future[Reply]]:
        try:
            return self.reply_bus.register()
        except TooManyWaitingRequests as error:
            raise TooManyRequests(f"too many requests, the ingress is overloaded. Retry later. ({error})") from None
        except NodeStopping:
            raise Unavailable("the node is shutting down; send the request to another node or retry once it is back") from None


# ---------------------------------------------------------------- responses


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")).encode(), status_code=status, headers=headers, media_type=JSON_TYPE)


def error_response(status: int, message: str, invocation_id: str | None = None) -> Response:
    """An error the ingress generated: Restate's body `{"code", "message", "source": "ingress"}`."""
    headers = {X_RESTATE_ERROR_SOURCE: "ingress", "content-type": JSON_TYPE}
    if invocation_id is not None:
        headers[X_RESTATE_ID] = invocation_id
    return Response(error_body(status, message), status_code=status, headers=headers)


def error_body(status: int, message: str) -> bytes:
    """The body of an error the ingress generated (also for requests refused before they reach it, e.g. 431)."""
    return json.dumps({"code": status, "message": message, "source": "ingress"}, separators=(",", ":")).encode()


def failure_status(code: int) -> int:
    """The HTTP status for an invocation failure code: the code itself if it is a valid final status, else 500."""
    return code if 200 <= code <= 999 else 500


def outcome_response(reply: Reply, invocation_id: str, output: OutputRules | None, include_expiry: bool) -> Response:
    """The HTTP answer for a reply to a call, attach or output request."""
    if reply.kind is ReplyKind.OUTCOME and reply.outcome is not None:
        headers = {X_RESTATE_ID: invocation_id}
        if include_expiry and reply.completion_expires_at_ms is not None:
            headers[IDEMPOTENCY_EXPIRES] = format_rfc3339_ms(reply.completion_expires_at_ms)
        return _outcome(reply.outcome, output, headers)
    if reply.kind is ReplyKind.NOT_FOUND:
        raise NotFound("invocation not found", invocation_id)
    if reply.kind is ReplyKind.NOT_READY:
        raise NotReady("the invocation exists but has not completed yet", invocation_id)
    if reply.kind is ReplyKind.CONFLICT:
        raise Conflict(reply.message or "the request conflicts with the invocation's state", invocation_id)
    raise Internal(f"unexpected reply {reply.kind.name} from the partition", invocation_id)


def _outcome(outcome: Outcome, output: OutputRules | None, headers: dict[str, str]) -> Response:
    if outcome.failure is not None:
        failure = outcome.failure
        headers[X_RESTATE_ERROR_SOURCE] = "invocation"
        payload = {"code": failure.code, "message": failure.message, "source": "invocation"}
        return json_response(failure_status(failure.code), payload, headers)
    body = outcome.value or b""
    content_type = output.content_type_for(body) if output is not None else None
    if content_type is not None:
        headers["content-type"] = content_type
    return Response(body, status_code=200, headers=headers)


# ---------------------------------------------------------------- request parsing


async def read_body(request: Request, max_body_bytes: int) -> bytes:
    """The whole request body; PayloadTooLarge as soon as it exceeds `max_body_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds max_body_bytes ({max_body_bytes})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise PayloadTooLarge(f"request body exceeds max_body_bytes ({max_body_bytes})")
        chunks.append(chunk)
    return b"".join(chunks)


def _optional_text_field(target: dict[str, Any], name: str) -> str | None:
    """The string field `name` of a JSON target, None if absent or null; BadRequest naming it if it is not a string."""
    return None if target.get(name) is None else _text_field(target, name)


def _text_field(target: dict[str, Any], name: str) -> str:
    """The string field `name` of a JSON target; BadRequest naming it if it is missing or not a string."""
    value = target.get(name)
    if not isinstance(value, str):
        found = "missing" if value is None else f"a JSON {type(value).__name__}"
        raise BadRequest(f"invalid request body: the field '{name}' must be a string, found {found}")
    return value


def _parse_service_path(rest: list[str], keyed: bool, forced_kind: str | None) -> tuple[str | None, str, bool]:
    """(key, handler, is_send) from the segments after the service name."""
    key = None
    if keyed:
        if not rest:
            raise BadRequest(_BAD_SERVICE_PATH)
        key, rest = _decode_key(rest[0]), rest[1:]
    if not rest or not rest[0]:
        raise BadRequest(_BAD_SERVICE_PATH)
    handler, tail = rest[0], rest[1:]
    if forced_kind is not None:
        if tail:
            raise BadRequest(_BAD_SERVICE_PATH)
        return key, handler, forced_kind == "send"
    if not tail:
        return key, handler, False
    if tail == ["send"]:
        return key, handler, True
    raise BadRequest(_BAD_SERVICE_PATH)


def _decode_key(segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError as error:
        raise BadRequest(f"bad path, cannot decode key: {error}") from None


def _attach_kind(verb: str) -> str:
    if verb not in ("attach", "output"):
        raise NotFound("not found")
    return verb


def _checked_invocation_id(text: str) -> str:
    try:
        InvocationId.parse(text)
    except ValueError as error:
        raise BadRequest(f"bad invocation id '{text}': {error}") from None
    return text


def _parse_awakeable(awakeable_id: str) -> tuple[InvocationId, int]:
    if is_legacy_awakeable_id(awakeable_id):
        raise BadRequest(
            f"bad awakeable id '{awakeable_id}': 'prom_1' ids come from service protocol versions below 5,"
            " which duro does not run; expected a 'sign_1' id",
        )
    try:
        return parse_awakeable_id(awakeable_id)
    except ValueError as error:
        raise BadRequest(f"bad awakeable id '{awakeable_id}': {error}") from None


def _parse_delay(query: list[tuple[str, str]]) -> int | None:
    for name, value in query:
        if name.lower() == "delay":
            try:
                return parse_duration_ms(value)
            except ValueError as error:
                raise BadRequest(f"bad delay query parameter, must be a ISO8601 duration: {error}") from None
    return None


def _invocation_id(
    service: str, key: str | None, handler: str, idempotency_key: str | None, is_run: bool, local_keys: LocalPartitionKeys
) -> str:
    """The id of a new request: derived for a workflow run or an idempotency key, else fresh (unkeyed: on `local_keys`' partitions)."""
    if is_run:
        assert key is not None, "a workflow run always has a key"
        return workflow_invocation_id(service, key)
    if idempotency_key is not None:
        return idempotent_invocation_id(service, key, handler, idempotency_key)
    return keyed_or_random_id(key, local_keys.place)


def _raw_path(request: Request) -> str:
    """The request path as sent (percent-encoding kept), without the query."""
    raw_path: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    return raw_path.split(b"?", 1)[0].decode("latin-1")


def _forwarded_headers(request: Request) -> tuple[tuple[str, str], ...]:
    query: bytes = request.scope.get("query_string", b"")
    ingress_path = _raw_path(request) + ("?" + query.decode("latin-1") if query else "")
    headers = [(X_RESTATE_INGRESS_PATH, ingress_path)]
    ingress_span = trace_headers_of(request)
    not_forwarded = _NOT_FORWARDED_WITH_TOKEN if request.scope.get(TOKEN_CHECKED_SCOPE_KEY) else _NOT_FORWARDED
    for name, value in request.scope["headers"]:
        if name not in not_forwarded and (ingress_span is None or name not in TRACE_HEADERS):
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    headers.extend(ingress_span or ())
    return tuple(headers)
