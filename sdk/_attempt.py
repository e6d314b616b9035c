"""Drives one invocation attempt with asyncio: feeds the request body to the machine, runs the handler, streams frames back.

The transport is two coroutines: `receive()` returns the next chunk of the
request body or None once the runtime closed it, `send(data)` writes to the
response body. While the handler runs, a reader task keeps feeding the
machine (bidirectional mode: notifications arrive as the runtime stores them;
request/response mode: the body is already complete). Handler coroutines wait
on an event that is pulsed whenever input arrives or a run finishes.

Cancellation: `close()` cancels the reader and every run task still executing;
a cancelled run proposes nothing, so the runtime re-executes it next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Protocol

from sdk._errors import (
    CANCELLED_STATUS_CODE,
    DisconnectedError,
    SdkInternalBaseException,
    SuspendedError,
    TerminalError,
)
from sdk._handler import Handler
from sdk._machine import Machine
from sdk._outcomes import AnyCompleted, CancelReceived, ExecuteRun, InvocationInput, RunOutcome, Suspended, WaitExternal
from sdk._results import Await, Failure, Value

logger = logging.getLogger("sdk")

DEFAULT_INPUT_CLOSE_TIMEOUT_MS = 30_000
RunAction = Callable[[], Awaitable[RunOutcome]]


class Transport(Protocol):
    """The request and response bodies of one invocation attempt."""

    async def receive(self) -> bytes | None:
        """The next request body chunk, or None once the body ended; raises DisconnectedError."""

    async def send(self, data: bytes) -> None:
        """Writes `data` to the response body."""


class Attempt:
    """One attempt of one invocation; see the module docstring."""

    def __init__(self, machine: Machine, handler: Handler, transport: Transport) -> None:
        self.machine = machine
        self.handler = handler
        self._transport = transport
        self._progress = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._run_actions: dict[int, RunAction] = {}
        self._run_tasks: dict[asyncio.Task[None], None] = {}  # in start order: cancelling them is then the same in every run
        self._reader: asyncio.Task[None] | None = None
        self._input_ended = asyncio.Event()
        self._disconnected = False
        self.finished = asyncio.Event()
        """Set when the attempt is over (`Request.attempt_finished_event`)."""

    # ------------------------------------------------------------ lifecycle

    async def read_until_ready(self) -> bool:
        """Reads until Start and the journal to replay arrived; False if the attempt cannot execute."""
        while not self.machine.is_ready_to_execute():
            if self.machine.failure is not None:
                return False
            chunk = await self._receive()
            if chunk is None:
                self.machine.notify_input_closed()
                return self.machine.is_ready_to_execute()
            self.machine.feed(chunk)
        if not self._input_ended.is_set():
            self._reader = asyncio.create_task(self._read_input(), name="sdk-input-reader")
            self._reader.add_done_callback(self._supervise)
        return True

    async def execute(self, make_context: Callable[[Attempt, InvocationInput], Any]) -> None:
        """Runs the handler to its end: Output+End, Output(failure)+End, Suspension or Error."""
        try:
            invocation = self.machine.sys_input()
            context = make_context(self, invocation)
            output = await self._call_handler(context, invocation.body)
            self._complete(Value(output))
        except TerminalError as error:
            self._complete(_failure_of(error))
        except SdkInternalBaseException:
            pass
        except Exception as error:
            self._on_handler_error(error)
        finally:
            await self.flush()

    async def close(self, input_close_timeout_ms: int = DEFAULT_INPUT_CLOSE_TIMEOUT_MS) -> None:
        """Ends the attempt: cancels runs, then waits (bounded) for the runtime to close the request body."""
        self.finished.set()
        for task in list(self._run_tasks):
            task.cancel()
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._input_ended.wait()), input_close_timeout_ms / 1000)
            except TimeoutError:
                logger.warning("the runtime did not close the request body within %d ms", input_close_timeout_ms)
            self._reader.cancel()
        await asyncio.gather(*self._run_tasks, return_exceptions=True)

    # ---------------------------------------------------------------- awaits

    async def wait(self, tree: Await) -> None:
        """Returns once `tree` is resolved.

        Raises TerminalError(409) if the invocation was cancelled, SuspendedError
        if it suspended, AttemptFailedError if the attempt failed.
        """
        while True:
            outcome = self.machine.do_await(tree)
            progress = self._progress
            await self.flush()
            if isinstance(outcome, AnyCompleted):
                return
            if isinstance(outcome, CancelReceived):
                raise TerminalError("cancelled", CANCELLED_STATUS_CODE)
            if isinstance(outcome, Suspended):
                raise SuspendedError()
            if isinstance(outcome, ExecuteRun):
                self._start_run(outcome.handle)
                continue
            assert isinstance(outcome, WaitExternal), f"unknown await outcome {outcome!r}"
            if self._disconnected:
                raise DisconnectedError()
            await progress.wait()

    def register_run(self, handle: int, action: RunAction) -> None:
        """Remembers the action of a run; it executes when the run is first awaited."""
        self._run_actions[handle] = action

    async def flush(self) -> None:
        """Writes the machine's pending output to the response body, in order."""
        async with self._send_lock:
            data = self.machine.take_output()
            if not data or self._disconnected:
                return
            try:
                await self._transport.send(data)
            except (OSError, RuntimeError) as error:
                logger.warning("cannot write to the runtime, the connection is gone: %s", error)
                self._disconnected = True

    # --------------------------------------------------------------- helpers

    async def _call_handler(self, context: Any, body: bytes) -> bytes:
        async with AsyncExitStack() as stack:
            for factory in self.handler.context_managers:
                await stack.enter_async_context(factory())
            return await self.handler.call(context, body)

    def _complete(self, result: Value | Failure) -> None:
        try:
            self.machine.sys_write_output(result)
            self.machine.sys_end()
        except SdkInternalBaseException:
            pass

    def _on_handler_error(self, error: Exception) -> None:
        terminal = _terminal_cause(error)
        if terminal is not None:
            self._complete(_failure_of(terminal))
            return
        if _internal_cause(error):
            return
        logger.warning("handler %s/%s failed, the runtime will retry: %r", self.handler.service_name, self.handler.name, error)
        stacktrace = "".join(traceback.format_exception(error))
        self.machine.notify_error(repr(error), stacktrace)

    def _start_run(self, handle: int) -> None:
        action = self._run_actions.pop(handle)
        task = asyncio.create_task(self._execute_run(handle, action), name=f"sdk-run-{handle}")
        self._run_tasks[task] = None
        task.add_done_callback(self._forget_run)
        task.add_done_callback(self._supervise)

    def _forget_run(self, task: asyncio.Task[None]) -> None:
        self._run_tasks.pop(task, None)

    async def _execute_run(self, handle: int, action: RunAction) -> None:
        try:
            outcome = await action()
            self.machine.propose_run_completion(handle, outcome)
            await self.flush()
        finally:
            self._pulse()

    async def _read_input(self) -> None:
        try:
            while True:
                chunk = await self._receive()
                if chunk is None:
                    self.machine.notify_input_closed()
                    return
                self.machine.feed(chunk)
                self._pulse()
        except DisconnectedError:
            self.machine.notify_input_closed()
        finally:
            self._pulse()

    async def _receive(self) -> bytes | None:
        try:
            chunk = await self._transport.receive()
        except DisconnectedError:
            self._disconnected = True
            self._input_ended.set()
            raise
        if chunk is None:
            self._input_ended.set()
        return chunk

    def _supervise(self, task: asyncio.Task[None]) -> None:
        """Fails the attempt loudly if a background task died of an unexpected error."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        logger.error("background task %s of the attempt failed", task.get_name(), exc_info=error)
        self.machine.notify_error(f"SDK background task {task.get_name()} failed: {error!r}")
        self._pulse()

    def _pulse(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()


def _failure_of(error: TerminalError) -> Failure:
    metadata = tuple((error.metadata or {}).items())
    return Failure(code=error.status_code, message=error.message, metadata=metadata)


def _terminal_cause(error: BaseException) -> TerminalError | None:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, TerminalError):
            return cause
        cause = cause.__cause__
    return None


def _internal_cause(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, SdkInternalBaseException):
            return True
        cause = cause.__cause__
    return False
