"""The registry's data model: services, handlers and their rules, built from a discovered endpoint manifest.

Everything here is a frozen dataclass that pydantic can turn into JSON and
back (the registry store persists them that way). `services_from_manifest`
turns a `protocol.manifest.EndpointManifest` into `ServiceInfo`s, applying
Restate's rules for handler kinds, input validation and visibility.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ingress.json_input import parse_json
from protocol import manifest as mf
from wal.records import HandlerKind, ServiceType

ANY_CONTENT_TYPE = "*/*"
RESERVED_SERVICE_PREFIX = "restate"


class SchemaError(ValueError):
    """A manifest that duro cannot register; the message names the service or handler and the problem."""


class InputError(ValueError):
    """A request body or content type that the handler's input rules reject."""


@dataclass(frozen=True, slots=True)
class InputRules:
    """What a handler accepts.

    `accepts_empty`: a request without body and without content-type passes.
    `content_type`: the accepted content type (`*/*`, `type/*` or `type/sub`);
    None means only the empty request passes. `json_schema` set means the body
    must be a non-empty JSON value.
    """

    accepts_empty: bool = True
    content_type: str | None = ANY_CONTENT_TYPE
    json_schema: Any = None

    @property
    def expects_json(self) -> bool:
        return self.json_schema is not None or _is_json_type(self.content_type)


@dataclass(frozen=True, slots=True)
class OutputRules:
    """Which content type the ingress puts on a handler's successful output."""

    content_type: str | None = "application/json"
    set_content_type_if_empty: bool = False
    json_schema: Any = None

    def content_type_for(self, body: bytes) -> str | None:
        """The response content type for an output `body` (None: send no content-type)."""
        if self.content_type is None:
            return None
        if not body and not self.set_content_type_if_empty:
            return None
        return self.content_type


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry settings a service or handler declared; None leaves the runtime default."""

    initial_interval_ms: int | None = None
    max_interval_ms: int | None = None
    max_attempts: int | None = None
    exponentiation_factor: float | None = None
    on_max_attempts: str | None = None  # "PAUSE" | "KILL"


@dataclass(frozen=True, slots=True)
class InvocationOptions:
    """Options a service or a handler may set (handler values override the service's). Durations in ms."""

    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """One handler as registered. `kind` is None for handlers of plain services."""

    name: str
    kind: HandlerKind | None
    input: InputRules = field(default_factory=InputRules)
    output: OutputRules = field(default_factory=OutputRules)
    options: InvocationOptions = field(default_factory=InvocationOptions)
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """One service of a deployment, its handlers in manifest order."""

    name: str
    service_type: ServiceType
    handlers: dict[str, HandlerInfo]
    options: InvocationOptions = field(default_factory=InvocationOptions)
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        return not bool(self.options.ingress_private)

    def handler_public(self, handler: HandlerInfo) -> bool:
        """True if the ingress may call `handler` (handler setting wins, else the service's)."""
        private = handler.options.ingress_private
        if private is None:
            return self.public
        return not private


@dataclass(frozen=True, slots=True)
class DiscoveredEndpoint:
    """What `GET {uri}/discover` returned, validated and converted."""

    uri: str
    use_http_11: bool
    protocol_mode: str  # "BIDI_STREAM" | "REQUEST_RESPONSE"
    min_protocol_version: int
    max_protocol_version: int
    manifest_version: int
    sdk_version: str | None
    services: tuple[ServiceInfo, ...]


# ---------------------------------------------------------------- input validation


def validate_input(rules: InputRules, content_type: str | None, body: bytes) -> None:
    """Check a request against a handler's input rules; raise InputError naming the problem."""
    if rules.accepts_empty and not body and content_type is None:
        return
    if rules.content_type is None:
        raise InputError(f"expected body and content-type to be empty, but got content-type {content_type!r} and {len(body)} bytes of body")
    if content_type is None:
        raise InputError(f"missing content-type; expected {rules.content_type!r}")
    if not _content_type_matches(rules.content_type, content_type):
        raise InputError(f"content-type {content_type!r} does not match {rules.content_type!r}")
    if rules.json_schema is not None and not body:
        raise InputError("empty body not allowed: the handler expects a JSON value")
    if body and rules.expects_json and _is_json_type(content_type):
        _check_json(body)


def _check_json(body: bytes) -> None:
    try:
        parse_json(body)
    except ValueError as error:
        raise InputError(f"body is not valid JSON: {error}") from None


def _media_parts(content_type: str) -> tuple[str, str] | None:
    media = content_type.split(";", 1)[0].strip().lower()
    main, slash, sub = media.partition("/")
    if not slash or not main or not sub:
        return None
    return main, sub


def _content_type_matches(rule: str, content_type: str) -> bool:
    if rule == ANY_CONTENT_TYPE:
        return True
    wanted = _media_parts(rule)
    given = _media_parts(content_type)
    if wanted is None or given is None:
        return False
    if wanted[1] == "*":
        return wanted[0] == given[0]
    return wanted == given


def _is_json_type(content_type: str | None) -> bool:
    if content_type is None:
        return False
    parts = _media_parts(content_type)
    return parts is not None and (parts[1] == "json" or parts[1].endswith("+json"))


# ---------------------------------------------------------------- descriptions (admin API)


def describe_input(rules: InputRules) -> str:
    """A short human description of input rules, worded as Restate's admin API does."""
    if rules.content_type is None:
        return "none"
    return _describe_content(rules.content_type, rules.json_schema)


def describe_output(rules: OutputRules) -> str:
    """A short human description of output rules, worded as Restate's admin API does."""
    if rules.content_type is None:
        return "none"
    described = _describe_content(rules.content_type, rules.json_schema)
    if described != rules.content_type:
        return described
    return ("optional " if rules.set_content_type_if_empty else "") + rules.content_type


def _describe_content(content_type: str, json_schema: Any) -> str:
    if isinstance(json_schema, dict):
        title = json_schema.get("title")
        if isinstance(title, str):
            return f"JSON '{title}'"
        schema_type = json_schema.get("type")
        if isinstance(schema_type, str):
            return f"JSON {schema_type}"
    return content_type


# ---------------------------------------------------------------- manifest conversion

_KINDS: dict[tuple[ServiceType, mf.HandlerType | None], HandlerKind | None] = {
    (ServiceType.SERVICE, None): None,
    (ServiceType.SERVICE, mf.HandlerType.SHARED): None,
    (ServiceType.VIRTUAL_OBJECT, None): HandlerKind.EXCLUSIVE,
    (ServiceType.VIRTUAL_OBJECT, mf.HandlerType.EXCLUSIVE): HandlerKind.EXCLUSIVE,
    (ServiceType.VIRTUAL_OBJECT, mf.HandlerType.SHARED): HandlerKind.SHARED,
    (ServiceType.WORKFLOW, None): HandlerKind.SHARED,
    (ServiceType.WORKFLOW, mf.HandlerType.SHARED): HandlerKind.SHARED,
    (ServiceType.WORKFLOW, mf.HandlerType.WORKFLOW): HandlerKind.WORKFLOW,
}

_SERVICE_TYPES: dict[mf.ServiceType, ServiceType] = {
    mf.ServiceType.SERVICE: ServiceType.SERVICE,
    mf.ServiceType.VIRTUAL_OBJECT: ServiceType.VIRTUAL_OBJECT,
    mf.ServiceType.WORKFLOW: ServiceType.WORKFLOW,
}


def services_from_manifest(manifest: mf.EndpointManifest) -> tuple[ServiceInfo, ...]:
    """The services a manifest declares; raises SchemaError naming the first invalid one."""
    seen: set[str] = set()
    services = []
    for service in manifest.services:
        if service.name in seen:
            raise SchemaError(f"service '{service.name}' is declared twice in the manifest")
        seen.add(service.name)
        services.append(_service_from_manifest(service))
    return tuple(services)


def _service_from_manifest(service: mf.Service) -> ServiceInfo:
    if service.name.lower().startswith(RESERVED_SERVICE_PREFIX) or service.name.lower() == "openapi":
        raise SchemaError(f"cannot register service '{service.name}': names starting with 'restate' and 'openapi' are reserved")
    service_type = _SERVICE_TYPES[service.ty]
    options = _options_from_manifest(service, workflow_completion_retention=None)
    handlers: dict[str, HandlerInfo] = {}
    for handler in service.handlers:
        if handler.name in handlers:
            raise SchemaError(f"service '{service.name}' declares handler '{handler.name}' twice")
        handlers[handler.name] = _handler_from_manifest(service.name, service_type, handler, options)
    return ServiceInfo(
        name=service.name,
        service_type=service_type,
        handlers=handlers,
        options=options,
        documentation=service.documentation,
        metadata=dict(service.metadata or {}),
    )


def _handler_from_manifest(
    service_name: str, service_type: ServiceType, handler: mf.Handler, service_options: InvocationOptions
) -> HandlerInfo:
    where = f"{service_name}/{handler.name}"
    key = (service_type, handler.ty)
    if key not in _KINDS:
        raise SchemaError(
            f"handler {where}: handler type {handler.ty.value if handler.ty else None} is not allowed in a {service_type.value} service"
        )
    kind = _KINDS[key]
    if handler.workflow_completion_retention is not None and kind is not HandlerKind.WORKFLOW:
        raise SchemaError(f"handler {where} sets workflowCompletionRetention, but it is not a workflow run handler")
    if handler.idempotency_retention is not None and kind is HandlerKind.WORKFLOW:
        raise SchemaError(f"handler {where} sets idempotencyRetention, but it is a workflow run handler")
    if service_options.ingress_private and handler.ingress_private is False:
        raise SchemaError(
            f"service '{service_name}' is private but handler {where} is explicitly public;"
            " make the service public and hide individual handlers instead"
        )
    return HandlerInfo(
        name=handler.name,
        kind=kind,
        input=_input_rules(where, handler.input_or_default),
        output=_output_rules(where, handler.output_or_default),
        options=_options_from_manifest(handler, workflow_completion_retention=handler.workflow_completion_retention),
        documentation=handler.documentation,
        metadata=dict(handler.metadata or {}),
    )


def _input_rules(where: str, payload: mf.InputPayload) -> InputRules:
    content_type = payload.content_type
    if content_type is not None:
        _check_rule_content_type(where, content_type)
    return InputRules(
        accepts_empty=not bool(payload.required),
        content_type=content_type,
        json_schema=payload.json_schema if content_type is not None else None,
    )


def _check_rule_content_type(where: str, content_type: str) -> None:
    parts = _media_parts(content_type)
    if parts is None:
        raise SchemaError(f"handler {where}: input content-type {content_type!r} must contain one '/'")
    if parts[0] == "*" and parts[1] != "*":
        raise SchemaError(f"handler {where}: input content-type {content_type!r}: the form */subtype is not supported")


def _output_rules(where: str, payload: mf.OutputPayload) -> OutputRules:
    if payload.content_type is not None and ("\n" in payload.content_type or "\r" in payload.content_type):
        raise SchemaError(f"handler {where}: output content-type {payload.content_type!r} is not a valid header value")
    return OutputRules(
        content_type=payload.content_type,
        set_content_type_if_empty=bool(payload.set_content_type_if_empty),
        json_schema=payload.json_schema if payload.content_type is not None else None,
    )


def _options_from_manifest(source: Any, workflow_completion_retention: int | None) -> InvocationOptions:
    on_max = source.retry_policy_on_max_attempts
    return InvocationOptions(
        inactivity_timeout_ms=source.inactivity_timeout,
        abort_timeout_ms=source.abort_timeout,
        journal_retention_ms=source.journal_retention,
        idempotency_retention_ms=source.idempotency_retention,
        workflow_completion_retention_ms=workflow_completion_retention,
        enable_lazy_state=source.enable_lazy_state,
        ingress_private=source.ingress_private,
        retry_policy=RetryPolicy(
            initial_interval_ms=source.retry_policy_initial_interval,
            max_interval_ms=source.retry_policy_max_interval,
            max_attempts=source.retry_policy_max_attempts,
            exponentiation_factor=source.retry_policy_exponentiation_factor,
            on_max_attempts=on_max.value if on_max is not None else None,
        ),
    )
