"""The contexts handlers receive; each type offers exactly what its handler kind may do.

`Context` (services) journals runs, sleeps, calls, sends, awakeables and
cancellations, and gives deterministic randomness and time.
`ObjectSharedContext` adds the object key and read-only state;
`ObjectContext` adds state writes. `WorkflowSharedContext` and
`WorkflowContext` add durable promises to their object counterparts.
Shared contexts have no state-writing methods at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from random import Random
from typing import Any, TypeVar

from sdk._attempt import Attempt
from sdk._errors import INTERNAL_CODE, SdkInternalBaseException, TerminalError
from sdk._futures import (
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
    decode_with,
)
from sdk._handler import Handler, handler_of
from sdk._options import RunOptions
from sdk._outcomes import InvocationInput, RunFailedRetryably, RunFailedTerminally, RunOutcome, RunSucceeded
from sdk._results import Failure, Value
from sdk._retry import RunRetryPolicy
from sdk._serde import BytesSerde, DefaultSerde, Serde, serde_for_hint

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the official SDK's name for input types
O = TypeVar("O")  # noqa: E741


class AttemptFinishedEvent:
    """Set once the current attempt is over; clean up attempt-scoped resources then."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def is_set(self) -> bool:
        """True once the attempt finished."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Waits until the attempt finished."""
        await self._event.wait()


@dataclass(frozen=True)
class Request:
    """The invocation's request as the handler sees it."""

    id: str
    """The invocation id (inv_...)."""
    headers: dict[str, str]
    """Headers of the original request (from the Input command)."""
    attempt_headers: dict[str, str]
    """Headers of this attempt's HTTP request from the runtime."""
    body: bytes
    """The raw input bytes."""
    attempt_finished_event: AttemptFinishedEvent
    """Set when this attempt ends."""
    scope: str | None = None
    """The scope of the invocation (V7), if any."""
    limit_key: str | None = None
    """The limit key of the invocation (V7), if any."""
    idempotency_key: str | None = None
    """The idempotency key of the invocation (V7), if any."""


class Context:
    """The context of a service handler."""

    def __init__(self, attempt: Attempt, invocation: InvocationInput, attempt_headers: dict[str, str]) -> None:
        self._attempt = attempt
        self._machine = attempt.machine
        self._invocation = invocation
        self._attempt_headers = attempt_headers
        self._random = Random(invocation.random_seed)

    # ------------------------------------------------------------- request

    def request(self) -> Request:
        """The invocation's id, headers and body."""
        return Request(
            id=self._invocation.invocation_id,
            headers=dict(self._invocation.headers),
            attempt_headers=dict(self._attempt_headers),
            body=self._invocation.body,
            attempt_finished_event=AttemptFinishedEvent(self._attempt.finished),
            scope=self._invocation.scope,
            limit_key=self._invocation.limit_key,
            idempotency_key=self._invocation.idempotency_key,
        )

    # --------------------------------------------------- determinism helpers

    def random(self) -> Random:
        """A Random seeded by the runtime: the same sequence in every attempt of this invocation."""
        return self._random

    def uuid(self) -> uuid.UUID:
        """A version-4 UUID drawn from `random()`: stable across retries and replays."""
        return uuid.UUID(int=self._random.getrandbits(128), version=4)

    def time(self) -> RestateDurableFuture[float]:
        """`time.time()`, journaled: stable across retries and replays."""
        return self.run_typed("timestamp", _wall_clock, RunOptions(type_hint=float))

    # ------------------------------------------------------------------ run

    def run(
        self,
        name: str,
        action: Callable[..., Any],
        serde: Serde[T] = DefaultSerde(),
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: Any | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[T]:
        """Runs `action(*args)` once and journals its result (deprecated in favour of `run_typed`).

        An ordinary exception retries the action (by retrying the attempt); after
        `max_attempts` attempts or `max_retry_duration` it becomes a TerminalError.
        """
        options = RunOptions(serde=serde, type_hint=type_hint, max_attempts=max_attempts, max_duration=max_retry_duration)
        bound = functools.partial(action, *args) if args is not None else action
        return self._run(name, bound, action, options)

    def run_typed(
        self,
        name: str,
        action: Callable[..., T] | Callable[..., Awaitable[T]],
        options: RunOptions[T] = RunOptions(),
        /,
        *args: Any,
        **kwargs: Any,
    ) -> RestateDurableFuture[T]:
        """Runs `action(*args, **kwargs)` once and journals its result; `options` control serde and retries."""
        if not isinstance(options, RunOptions):
            raise TypeError(
                f"run_typed's third argument must be RunOptions, got {options!r};"
                " pass action arguments after it: run_typed(name, action, RunOptions(), *args, **kwargs)"
            )
        return self._run(name, functools.partial(action, *args, **kwargs), action, options)

    def _run(self, name: str, bound: Callable[[], Any], action: Callable[..., Any], options: RunOptions[T]) -> RestateDurableFuture[T]:
        hint = options.type_hint if options.type_hint is not None else _return_annotation(action)
        serde = serde_for_hint(options.serde, hint)
        run = self._machine.sys_run(name)
        if not run.replayed:
            policy = options.retry_policy()
            self._attempt.register_run(run.handle, lambda: _execute_action(bound, serde, policy))
        return RestateDurableFuture(self._attempt, run.handle, decode_with(serde))

    # ---------------------------------------------------------------- sleep

    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        """A durable timer firing after `delta`; the invocation may suspend meanwhile."""
        wake_up_time_ms = _now_ms() + int(delta.total_seconds() * 1000)
        handle = self._machine.sys_sleep(wake_up_time_ms, name or "")
        return RestateDurableSleepFuture(self._attempt, handle, decode_with(None))

    # ---------------------------------------------------------------- calls

    def service_call(
        self,
        tpe: Callable[..., Any],
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Calls a handler of a service and returns a future of its result."""
        return self._typed_call(handler_of(tpe), arg, None, idempotency_key, headers)

    def object_call(
        self,
        tpe: Callable[..., Any],
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Calls a handler of the virtual object `key`."""
        return self._typed_call(handler_of(tpe), arg, key, idempotency_key, headers)

    def workflow_call(
        self,
        tpe: Callable[..., Any],
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[Any]:
        """Calls a handler of the workflow `key`."""
        return self._typed_call(handler_of(tpe), arg, key, idempotency_key, headers)

    def service_send(
        self,
        tpe: Callable[..., Any],
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Sends a one-way call to a service handler, optionally after `send_delay`."""
        return self._typed_send(handler_of(tpe), arg, None, send_delay, idempotency_key, headers)

    def object_send(
        self,
        tpe: Callable[..., Any],
        key: str,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Sends a one-way call to a handler of the virtual object `key`."""
        return self._typed_send(handler_of(tpe), arg, key, send_delay, idempotency_key, headers)

    def workflow_send(
        self,
        tpe: Callable[..., Any],
        key: str,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Sends a one-way call to a handler of the workflow `key`."""
        return self._typed_send(handler_of(tpe), arg, key, send_delay, idempotency_key, headers)

    def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateDurableCallFuture[bytes]:
        """Calls `service/handler` with raw bytes; the future yields raw bytes."""
        _check_idempotency_key(idempotency_key)
        handles = self._machine.sys_call(
            service,
            handler,
            bytes(arg),
            key=key or "",
            idempotency_key=idempotency_key,
            headers=_header_pairs(headers),
            scope=scope,
            limit_key=limit_key,
        )
        return RestateDurableCallFuture(self._attempt, handles.result_handle, decode_with(BytesSerde()), handles.invocation_id_handle)

    def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> SendHandle:
        """Sends a one-way call with raw bytes to `service/handler`."""
        _check_idempotency_key(idempotency_key)
        handle = self._machine.sys_send(
            service,
            handler,
            bytes(arg),
            key=key or "",
            invoke_time_ms=_invoke_time_ms(send_delay),
            idempotency_key=idempotency_key,
            headers=_header_pairs(headers),
            scope=scope,
            limit_key=limit_key,
        )
        return SendHandle(self._attempt, handle)

    def _typed_call(
        self,
        target: Handler,
        arg: Any,
        key: str | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> RestateDurableCallFuture[Any]:
        _check_idempotency_key(idempotency_key)
        handles = self._machine.sys_call(
            target.service_name,
            target.name,
            target.input_serde.serialize(arg),
            key=key or "",
            idempotency_key=idempotency_key,
            headers=_header_pairs(headers),
        )
        return RestateDurableCallFuture(
            self._attempt, handles.result_handle, decode_with(target.output_serde), handles.invocation_id_handle
        )

    def _typed_send(
        self,
        target: Handler,
        arg: Any,
        key: str | None,
        send_delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> SendHandle:
        _check_idempotency_key(idempotency_key)
        handle = self._machine.sys_send(
            target.service_name,
            target.name,
            target.input_serde.serialize(arg),
            key=key or "",
            invoke_time_ms=_invoke_time_ms(send_delay),
            idempotency_key=idempotency_key,
            headers=_header_pairs(headers),
        )
        return SendHandle(self._attempt, handle)

    # ---------------------------------------------------- awakeables, signals

    def awakeable(self, serde: Serde[T] = DefaultSerde(), type_hint: Any | None = None) -> tuple[str, RestateDurableFuture[T]]:
        """A new awakeable: its id (give it to another system) and the future of its value."""
        awakeable_id, handle = self._machine.sys_awakeable()
        return awakeable_id, RestateDurableFuture(self._attempt, handle, decode_with(serde_for_hint(serde, type_hint)))

    def resolve_awakeable(self, name: str, value: Any, serde: Serde[Any] = DefaultSerde()) -> None:
        """Completes the awakeable `name` with `value`."""
        content = serde_for_hint(serde, type(value)).serialize(value)
        self._machine.sys_complete_awakeable(name, Value(content))

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = INTERNAL_CODE) -> None:
        """Fails the awakeable `name`; its awaiter gets a TerminalError."""
        self._machine.sys_complete_awakeable(name, Failure(code=failure_code, message=failure_message))

    def signal(self, name: str, serde: Serde[T] = DefaultSerde(), type_hint: Any | None = None) -> RestateDurableFuture[T]:
        """The future of this invocation's named signal `name`."""
        handle = self._machine.sys_signal(name)
        return RestateDurableFuture(self._attempt, handle, decode_with(serde_for_hint(serde, type_hint)))

    def resolve_signal(self, invocation_id: str, name: str, value: Any, serde: Serde[Any] = DefaultSerde()) -> None:
        """Completes the named signal `name` of another invocation with `value`."""
        content = serde_for_hint(serde, type(value)).serialize(value)
        self._machine.sys_complete_signal(invocation_id, name, Value(content))

    def reject_signal(self, invocation_id: str, name: str, failure_message: str, failure_code: int = INTERNAL_CODE) -> None:
        """Fails the named signal `name` of another invocation."""
        self._machine.sys_complete_signal(invocation_id, name, Failure(code=failure_code, message=failure_message))

    # ------------------------------------------------------------ invocations

    def cancel_invocation(self, invocation_id: str) -> None:
        """Asks the invocation `invocation_id` to cancel."""
        if not invocation_id:
            raise ValueError("cancel_invocation needs an invocation id (inv_...), got an empty value")
        self._machine.sys_cancel_invocation(invocation_id)

    def attach_invocation(
        self, invocation_id: str, serde: Serde[T] = DefaultSerde(), type_hint: Any | None = None
    ) -> RestateDurableFuture[T]:
        """The future of the result of the invocation `invocation_id`."""
        if not invocation_id:
            raise ValueError("attach_invocation needs an invocation id (inv_...), got an empty value")
        handle = self._machine.sys_attach_invocation(invocation_id)
        return RestateDurableFuture(self._attempt, handle, decode_with(serde_for_hint(serde, type_hint)))


class ObjectSharedContext(Context):
    """The context of a shared (read-only) handler of a virtual object."""

    def key(self) -> str:
        """The key of this object."""
        return self._invocation.key

    def get(
        self,
        name: str,
        serde: Serde[T] = DefaultSerde(),
        type_hint: type[T] | None = None,
        entry_name: str | None = None,
    ) -> RestateDurableFuture[T | None]:
        """The value of state `name`, or None if unset."""
        handle = self._machine.sys_get_state(name, entry_name or "")
        return RestateDurableFuture(self._attempt, handle, decode_with(serde_for_hint(serde, type_hint)))

    def state_keys(self, entry_name: str | None = None) -> RestateDurableFuture[list[str]]:
        """The names of all set state entries."""
        handle = self._machine.sys_get_state_keys(entry_name or "")
        return RestateDurableFuture(self._attempt, handle, decode_with(None))


class ObjectContext(ObjectSharedContext):
    """The context of an exclusive handler of a virtual object: reads and writes state."""

    def set(self, name: str, value: T, serde: Serde[T] = DefaultSerde(), entry_name: str | None = None) -> None:
        """Sets state `name` to `value`."""
        content = serde_for_hint(serde, type(value)).serialize(value)
        self._machine.sys_set_state(name, content, entry_name or "")

    def clear(self, name: str, entry_name: str | None = None) -> None:
        """Removes state `name`."""
        self._machine.sys_clear_state(name, entry_name or "")

    def clear_all(self, entry_name: str | None = None) -> None:
        """Removes all state of this object."""
        self._machine.sys_clear_all_state(entry_name or "")


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a shared workflow handler: reads state, completes promises."""

    def promise(self, name: str, serde: Serde[T] = DefaultSerde(), type_hint: type[T] | None = None) -> DurablePromise[T]:
        """The workflow's durable promise `name`."""
        return DurablePromise(self._attempt, name, serde_for_hint(serde, type_hint))


class WorkflowContext(ObjectContext):
    """The context of a workflow's run handler: state and durable promises."""

    def promise(self, name: str, serde: Serde[T] = DefaultSerde(), type_hint: type[T] | None = None) -> DurablePromise[T]:
        """The workflow's durable promise `name`."""
        return DurablePromise(self._attempt, name, serde_for_hint(serde, type_hint))


def context_class_for(handler: Handler) -> type[Context]:
    """The context type a handler of this kind receives."""
    if handler.service_kind == "service":
        return Context
    if handler.service_kind == "object":
        return ObjectSharedContext if handler.kind == "shared" else ObjectContext
    return WorkflowSharedContext if handler.kind == "shared" else WorkflowContext


async def _execute_action(action: Callable[[], Any], serde: Serde[Any], policy: RunRetryPolicy | None) -> RunOutcome:
    """Runs a run's action (coroutine functions on the loop, others in a thread) and classifies the outcome."""
    started = time.monotonic()
    try:
        result = await _call_action(action)
        return RunSucceeded(serde.serialize(result))
    except TerminalError as error:
        metadata = tuple((error.metadata or {}).items())
        return RunFailedTerminally(Failure(code=error.status_code, message=error.message, metadata=metadata))
    except (asyncio.CancelledError, SdkInternalBaseException):
        raise
    except Exception as error:
        duration_ms = int((time.monotonic() - started) * 1000)
        stacktrace = "".join(traceback.format_exception(error))
        return RunFailedRetryably(repr(error), stacktrace, duration_ms, policy)


async def _call_action(action: Callable[[], Any]) -> Any:
    if inspect.iscoroutinefunction(action):
        return await action()
    loop = asyncio.get_running_loop()
    call_in_context = functools.partial(contextvars.copy_context().run, action)
    result = await loop.run_in_executor(None, call_in_context)
    if inspect.isawaitable(result):
        return await result
    return result


def _return_annotation(action: Callable[..., Any]) -> Any:
    try:
        annotation = inspect.signature(action, eval_str=True).return_annotation
    except (TypeError, ValueError, NameError):
        return None
    return None if annotation is inspect.Signature.empty else annotation


def _wall_clock() -> float:
    return time.time()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _invoke_time_ms(send_delay: timedelta | None) -> int:
    if not send_delay:
        return 0
    return _now_ms() + int(send_delay.total_seconds() * 1000)


def _header_pairs(headers: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((headers or {}).items())


def _check_idempotency_key(idempotency_key: str | None) -> None:
    if idempotency_key is not None and not idempotency_key:
        raise ValueError("idempotency_key must be non-empty when given; pass None for no idempotency key")
