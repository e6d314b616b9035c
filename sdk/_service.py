"""Declares services: `Service` (stateless), `VirtualObject` (keyed, stateful) and `Workflow` (keyed, runs once per key).

Each exposes decorators that register `async def` handlers; the decorated
function is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar, Union

from sdk._handler import (
    ContextManagerFactory,
    Handler,
    HandlerKind,
    HandlerOptions,
    ServiceKind,
    attach_handler,
    make_handler,
)
from sdk._options import InvocationRetryPolicy
from sdk._serde import DefaultSerde, Serde

F = TypeVar("F", bound=Callable[..., Any])
JSON = "application/json"
StatePreload = Union[bool, list[str], None]


@dataclass(frozen=True)
class ServiceOptions:
    """Service-wide options that end up in the discovery manifest."""

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
    enable_lazy_state: bool | None = None
    """True: state is fetched key by key instead of sent with Start (manifest v3)."""
    ingress_private: bool | None = None
    """True: callable only from other services, not through the ingress (manifest v3)."""
    invocation_retry_policy: InvocationRetryPolicy | None = None
    """How the runtime retries failed invocations (manifest v4)."""


class _ServiceBase:
    """What all three service types share: a name, options and a table of handlers."""

    kind: ServiceKind = "service"

    def __init__(
        self,
        name: str,
        options: ServiceOptions,
        invocation_context_managers: list[ContextManagerFactory] | None,
    ) -> None:
        if not name:
            raise ValueError("a service needs a non-empty name")
        self._name = name
        self.options = options
        self.handlers: dict[str, Handler] = {}
        self._context_managers = tuple(invocation_context_managers or ())

    @property
    def name(self) -> str:
        """The service name, as used in URLs and calls."""
        return self._name

    def _register(
        self,
        *,
        name: str | None,
        kind: HandlerKind | None,
        accept: str,
        content_type: str,
        input_serde: Serde[Any],
        output_serde: Serde[Any],
        options: HandlerOptions,
        context_managers: list[ContextManagerFactory] | None,
    ) -> Callable[[F], F]:
        def decorate(fn: F) -> F:
            handler = make_handler(
                fn,
                service_name=self._name,
                service_kind=self.kind,
                name=name,
                kind=kind,
                accept=accept,
                content_type=content_type,
                input_serde=input_serde,
                output_serde=output_serde,
                options=options,
                context_managers=self._context_managers + tuple(context_managers or ()),
            )
            if handler.name in self.handlers:
                raise ValueError(f"handler {handler.name} is already registered in {self._name}")
            self.handlers[handler.name] = handler
            attach_handler(fn, handler)
            return fn

        return decorate


class Service(_ServiceBase):
    """A stateless service; its handlers run concurrently without keys."""

    kind: ServiceKind = "service"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[ContextManagerFactory] | None = None,
    ) -> None:
        options = ServiceOptions(
            description=description,
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        super().__init__(name, options, invocation_context_managers)

    def handler(
        self,
        name: str | None = None,
        accept: str = JSON,
        content_type: str = JSON,
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[ContextManagerFactory] | None = None,
        *,
        kind: None = None,
    ) -> Callable[[F], F]:
        """Registers an `async def handler(ctx: Context[, input])`; `kind` must stay None for services."""
        if kind is not None:
            raise ValueError(f"handlers of service {self.name} have no kind; got kind={kind!r}")
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._register(
            name=name,
            kind=None,
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            options=options,
            context_managers=invocation_context_managers,
        )


class VirtualObject(_ServiceBase):
    """A keyed service with durable state; one exclusive handler runs per key at a time."""

    kind: ServiceKind = "object"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: StatePreload = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[ContextManagerFactory] | None = None,
    ) -> None:
        options = ServiceOptions(
            description=description,
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=lazy_state_of(state_preload, enable_lazy_state),
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        super().__init__(name, options, invocation_context_managers)

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] | None = "exclusive",
        accept: str = JSON,
        content_type: str = JSON,
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: StatePreload = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[ContextManagerFactory] | None = None,
    ) -> Callable[[F], F]:
        """Registers a handler; "exclusive" gets an ObjectContext, "shared" a read-only ObjectSharedContext."""
        checked_kind = _check_kind(self.name, kind or "exclusive", ("exclusive", "shared"))
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=lazy_state_of(state_preload, enable_lazy_state),
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._register(
            name=name,
            kind=checked_kind,
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            options=options,
            context_managers=invocation_context_managers,
        )


class Workflow(_ServiceBase):
    """A keyed service whose `main` handler runs once per key, with durable promises for signals."""

    kind: ServiceKind = "workflow"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: StatePreload = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[ContextManagerFactory] | None = None,
    ) -> None:
        options = ServiceOptions(
            description=description,
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=lazy_state_of(state_preload, enable_lazy_state),
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        super().__init__(name, options, invocation_context_managers)

    def main(
        self,
        name: str | None = None,
        accept: str = JSON,
        content_type: str = JSON,
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: StatePreload = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[ContextManagerFactory] | None = None,
    ) -> Callable[[F], F]:
        """Registers the workflow's run handler (kind "workflow", gets a WorkflowContext)."""
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            workflow_retention=workflow_retention,
            enable_lazy_state=lazy_state_of(state_preload, enable_lazy_state),
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._register(
            name=name,
            kind="workflow",
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            options=options,
            context_managers=invocation_context_managers,
        )

    def handler(
        self,
        name: str | None = None,
        kind: Literal["shared", "exclusive", "workflow"] | None = "shared",
        accept: str = JSON,
        content_type: str = JSON,
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: StatePreload = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[ContextManagerFactory] | None = None,
    ) -> Callable[[F], F]:
        """Registers a handler beside the run handler; "shared" (default) gets a WorkflowSharedContext."""
        kind = _check_kind(self.name, kind or "shared", ("shared", "exclusive", "workflow"))
        options = HandlerOptions(
            metadata=metadata,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            enable_lazy_state=lazy_state_of(state_preload, enable_lazy_state),
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
        )
        return self._register(
            name=name,
            kind=kind,
            accept=accept,
            content_type=content_type,
            input_serde=input_serde,
            output_serde=output_serde,
            options=options,
            context_managers=invocation_context_managers,
        )


AnyService = Union[Service, VirtualObject, Workflow]


def lazy_state_of(state_preload: StatePreload, enable_lazy_state: bool | None) -> bool | None:
    """The manifest's enableLazyState for the official `state_preload`/`enable_lazy_state` options."""
    if state_preload is not None and enable_lazy_state is not None:
        raise ValueError("set either state_preload or the deprecated enable_lazy_state, not both")
    if state_preload is None:
        return enable_lazy_state
    if isinstance(state_preload, bool):
        return not state_preload
    raise ValueError(
        "state_preload as a list of keys needs discovery manifest v5, which duro's SDK does not speak;"
        " expected True (preload all state) or False (lazy state)"
    )


def _check_kind(service_name: str, kind: str, allowed: tuple[HandlerKind, ...]) -> HandlerKind:
    for allowed_kind in allowed:
        if kind == allowed_kind:
            return allowed_kind
    raise ValueError(f"handler kind {kind!r} is not valid in {service_name}; expected one of {allowed}")
