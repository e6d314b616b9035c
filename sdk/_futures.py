"""Durable futures: awaitable results of journaled operations (state reads, runs, calls, sleeps, promises).

A future is bound to one notification handle of one attempt. Awaiting it asks
the attempt to wait until the machine has the notification, then takes and
decodes it once; further awaits return the same value (or raise the same
error). A failure notification raises `TerminalError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sdk._errors import INTERNAL_CODE, TerminalError
from sdk._results import AwaitHandle, Failure, InvocationIdResult, Result, StateKeys, Value, Void
from sdk._serde import Serde

if TYPE_CHECKING:
    from sdk._attempt import Attempt

T = TypeVar("T")
Decoder = Callable[[Result], Any]


def decode_with(serde: Serde[Any] | None) -> Decoder:
    """A decoder of notification results that deserializes values with `serde`."""

    def decode(result: Result) -> Any:
        if isinstance(result, Failure):
            metadata = dict(result.metadata) if result.metadata else None
            raise TerminalError(result.message, result.code, metadata)
        if isinstance(result, Value):
            return result.content if serde is None else serde.deserialize(result.content)
        if isinstance(result, InvocationIdResult):
            return result.invocation_id
        if isinstance(result, StateKeys):
            return list(result.keys)
        assert isinstance(result, Void), f"unknown notification result {result!r}"
        return None

    return decode


class RestateDurableFuture(Generic[T], Awaitable[T]):
    """The result of a journaled operation; await it (any number of times) to get the value."""

    def __init__(self, attempt: Attempt, handle: int, decode: Decoder) -> None:
        self._attempt = attempt
        self.handle = handle
        self._decode = decode
        self._task: asyncio.Future[T] | None = None

    @property
    def attempt(self) -> Attempt:
        """The attempt this future belongs to."""
        return self._attempt

    def is_completed(self) -> bool:
        """True if awaiting would not block: the value was taken or its notification is available."""
        if self._task is not None and self._task.done():
            return True
        return self._attempt.machine.is_completed(self.handle)

    def __await__(self) -> Generator[Any, None, T]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._resolve())
        return self._task.__await__()

    async def _resolve(self) -> T:
        machine = self._attempt.machine
        if not machine.is_completed(self.handle):
            await self._attempt.wait(AwaitHandle(self.handle))
        result = machine.take_notification(self.handle)
        assert result is not None, f"handle {self.handle} resolved but has no notification"
        return self._decode(result)


class RestateDurableSleepFuture(RestateDurableFuture[None]):
    """Completes when the durable timer fires."""


class RestateDurableCallFuture(RestateDurableFuture[T]):
    """The result of a call to another handler, plus the callee's invocation id."""

    def __init__(self, attempt: Attempt, handle: int, decode: Decoder, invocation_id_handle: int) -> None:
        super().__init__(attempt, handle, decode)
        self._invocation_id = RestateDurableFuture[str](attempt, invocation_id_handle, decode_with(None))

    async def invocation_id(self) -> str:
        """The invocation id of the callee."""
        return await self._invocation_id

    async def cancel_invocation(self) -> None:
        """Cancels the callee; a shortcut for `ctx.cancel_invocation(await f.invocation_id())`."""
        self._attempt.machine.sys_cancel_invocation(await self.invocation_id())


class SendHandle:
    """A one-way call that was journaled; gives access to the callee's invocation id."""

    def __init__(self, attempt: Attempt, invocation_id_handle: int) -> None:
        self._attempt = attempt
        self._invocation_id = RestateDurableFuture[str](attempt, invocation_id_handle, decode_with(None))

    async def invocation_id(self) -> str:
        """The invocation id of the callee."""
        return await self._invocation_id

    async def cancel_invocation(self) -> None:
        """Cancels the callee."""
        self._attempt.machine.sys_cancel_invocation(await self.invocation_id())


class DurablePromise(Generic[T]):
    """A workflow's named durable promise: read it, peek at it, resolve or reject it once."""

    def __init__(self, attempt: Attempt, name: str, serde: Serde[T]) -> None:
        self._attempt = attempt
        self.name = name
        self.serde = serde

    def value(self) -> RestateDurableFuture[T]:
        """Completes with the promise's value once it is resolved (or fails once rejected)."""
        handle = self._attempt.machine.sys_get_promise(self.name)
        return RestateDurableFuture(self._attempt, handle, decode_with(self.serde))

    def peek(self) -> RestateDurableFuture[T | None]:
        """The value if already resolved, else None (fails if rejected)."""
        handle = self._attempt.machine.sys_peek_promise(self.name)
        return RestateDurableFuture(self._attempt, handle, decode_with(self.serde))

    def resolve(self, value: T) -> RestateDurableFuture[None]:
        """Resolves the promise; awaiting fails with 409 if it was already completed."""
        handle = self._attempt.machine.sys_complete_promise(self.name, Value(self.serde.serialize(value)))
        return RestateDurableFuture(self._attempt, handle, decode_with(None))

    def reject(self, message: str, code: int = INTERNAL_CODE) -> RestateDurableFuture[None]:
        """Rejects the promise with a terminal failure; awaiting fails with 409 if already completed."""
        handle = self._attempt.machine.sys_complete_promise(self.name, Failure(code=code, message=message))
        return RestateDurableFuture(self._attempt, handle, decode_with(None))

    def __await__(self) -> Generator[Any, None, T]:
        return self.value().__await__()
