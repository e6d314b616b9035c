"""Describes one handler: its name, kind, codecs and type hints, read from the decorated function.

The decorators of `Service`, `VirtualObject` and `Workflow` build a `Handler`
and attach it to the function, which is returned unchanged, so other handlers
can pass the function itself to `ctx.service_call(...)` and friends.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from protocol.error_codes import InvocationErrorCode
from sdk._errors import TerminalError
from sdk._options import InvocationRetryPolicy
from sdk._serde import Serde, json_schema_of, serde_for_hint, unwrap_optional

HandlerKind = Literal["exclusive", "shared", "workflow"]
ServiceKind = Literal["service", "object", "workflow"]
ContextManagerFactory = Callable[[], AbstractAsyncContextManager[None]]

_HANDLER_ATTRIBUTE = "__duro_handler__"
BAD_REQUEST_CODE = InvocationErrorCode.BAD_REQUEST


@dataclass(frozen=True)
class TypeInfo:
    """A handler's input or output type as declared by its annotations."""

    annotation: Any = None
    """The type without Optional; None when not annotated."""
    is_void: bool = False
    """True for a handler without input parameter or with a `-> None` return."""
    is_optional: bool = False
    """True when annotated Optional[T]."""

    def json_schema(self) -> Any:
        """The JSON schema for the manifest, or None when nothing is known."""
        if self.annotation is None or self.is_void:
            return None
        schema = json_schema_of(self.annotation)
        if self.is_optional and isinstance(schema, dict) and isinstance(schema.get("type"), str):
            schema = {**schema, "type": [schema["type"], "null"]}
        return schema


@dataclass(frozen=True)
class HandlerOptions:
    """Per-handler options that end up in the discovery manifest."""

    description: str | None = None
    """Documentation shown by the runtime's admin API and UI."""
    metadata: dict[str, str] | None = None
    """Free-form key/values for the admin API."""
    inactivity_timeout: timedelta | None = None
    """Idle time after which the runtime asks the invocation to suspend (manifest v3)."""
    abort_timeout: timedelta | None = None
    """Time after the inactivity timeout before the runtime aborts the attempt (manifest v3)."""
    journal_retention: timedelta | None = None
    """How long the journal of a finished invocation is kept (manifest v3)."""
    idempotency_retention: timedelta | None = None
    """How long idempotent results are kept (manifest v3)."""
    workflow_retention: timedelta | None = None
    """How long a finished workflow's result and promises are kept (manifest v3)."""
    enable_lazy_state: bool | None = None
    """True: state is fetched key by key instead of sent with Start (manifest v3)."""
    ingress_private: bool | None = None
    """True: callable only from other services, not through the ingress (manifest v3)."""
    invocation_retry_policy: InvocationRetryPolicy | None = None
    """How the runtime retries failed invocations (manifest v4)."""


@dataclass(frozen=True)
class Handler:
    """One handler of a service, ready to invoke and to describe in the manifest."""

    service_name: str
    service_kind: ServiceKind
    name: str
    kind: HandlerKind | None
    fn: Callable[..., Awaitable[Any]]
    arity: int
    accept: str
    content_type: str
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    input_type: TypeInfo
    output_type: TypeInfo
    options: HandlerOptions = field(default_factory=HandlerOptions)
    context_managers: tuple[ContextManagerFactory, ...] = ()

    def decode_input(self, body: bytes) -> Any:
        """The handler's argument; a body that does not parse is a TerminalError 400."""
        try:
            return self.input_serde.deserialize(body)
        except Exception as error:
            raise TerminalError(f"cannot parse the input of {self.service_name}/{self.name}: {error}", BAD_REQUEST_CODE) from error

    async def call(self, ctx: Any, body: bytes) -> bytes:
        """Runs the handler function on `body` and serializes its result."""
        if self.arity == 1:
            result = await self.fn(ctx)
        else:
            result = await self.fn(ctx, self.decode_input(body))
        return self.output_serde.serialize(result)


def make_handler(
    fn: Callable[..., Awaitable[Any]],
    *,
    service_name: str,
    service_kind: ServiceKind,
    name: str | None,
    kind: HandlerKind | None,
    accept: str,
    content_type: str,
    input_serde: Serde[Any],
    output_serde: Serde[Any],
    options: HandlerOptions,
    context_managers: tuple[ContextManagerFactory, ...] = (),
) -> Handler:
    """Reads `fn`'s signature and builds its Handler; raises ValueError for unusable functions."""
    if not inspect.iscoroutinefunction(fn):
        raise ValueError(f"handler {fn!r} of {service_name} must be an `async def` function")
    signature = inspect.signature(fn, eval_str=True)
    parameters = list(signature.parameters.values())
    if not 1 <= len(parameters) <= 2:
        raise ValueError(f"handler {fn.__name__} of {service_name} takes {len(parameters)} parameters; expected (ctx) or (ctx, input)")
    input_type = _input_type(parameters)
    output_type = _output_type(signature)
    return Handler(
        service_name=service_name,
        service_kind=service_kind,
        name=name or fn.__name__,
        kind=kind,
        fn=fn,
        arity=len(parameters),
        accept=accept,
        content_type=content_type,
        input_serde=serde_for_hint(input_serde, input_type.annotation),
        output_serde=serde_for_hint(output_serde, output_type.annotation),
        input_type=input_type,
        output_type=output_type,
        options=options if options.description is not None else _with_doc(options, fn),
        context_managers=context_managers,
    )


def attach_handler(fn: Callable[..., Any], handler: Handler) -> None:
    """Marks `fn` as the function of `handler`."""
    setattr(fn, _HANDLER_ATTRIBUTE, handler)


def handler_of(fn: Callable[..., Any]) -> Handler:
    """The Handler of a decorated function; raises ValueError for other callables."""
    handler = getattr(fn, _HANDLER_ATTRIBUTE, None)
    if not isinstance(handler, Handler):
        raise ValueError(
            f"{fn!r} is not a handler; expected a function decorated with"
            " @service.handler(), @object.handler() or @workflow.main()/.handler()"
        )
    return handler


def _input_type(parameters: list[inspect.Parameter]) -> TypeInfo:
    if len(parameters) == 1:
        return TypeInfo(is_void=True)
    annotation = parameters[1].annotation
    if annotation is inspect.Parameter.empty:
        return TypeInfo()
    is_optional, core = unwrap_optional(annotation)
    return TypeInfo(annotation=core, is_optional=is_optional)


def _output_type(signature: inspect.Signature) -> TypeInfo:
    annotation = signature.return_annotation
    if annotation is None or annotation is type(None) or annotation is inspect.Signature.empty:
        return TypeInfo(is_void=True)
    is_optional, core = unwrap_optional(annotation)
    return TypeInfo(annotation=core, is_optional=is_optional)


def _with_doc(options: HandlerOptions, fn: Callable[..., Any]) -> HandlerOptions:
    doc = inspect.getdoc(fn)
    if not doc:
        return options
    return HandlerOptions(**{**options.__dict__, "description": doc})
