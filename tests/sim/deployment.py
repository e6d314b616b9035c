"""The simulated deployment: duro's SDK app run in-process behind the invoker's `Exchange` interface, with transport faults.

Each attempt becomes one ASGI request to the SDK app: what the invoker
sends arrives through `receive()`, what the app sends comes back through
`chunks()`. A fault chosen by the simulation for the attempt makes the
exchange refuse to connect, drop the connection after some chunks, never
answer, stall after some chunks, answer garbage, or deliver slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from partition_worker.deployments import DeploymentEndpoint
from partition_worker.exchange import ExchangeError
from sdk import SdkApp
from tests.sim.services import CURRENT, AttemptInfo, FaultSource


class Fault(enum.Enum):
    NONE = "none"
    REFUSE = "refuse"  # the connection is refused
    DROP = "drop"  # the connection breaks after `after_chunks` response chunks
    SILENT = "silent"  # the deployment never answers (no response headers)
    STALL = "stall"  # the response stops after `after_chunks` chunks, the connection stays open
    GARBAGE = "garbage"  # bytes that are not protocol frames arrive after `after_chunks` chunks
    SLOW = "slow"  # each chunk arrives `delay_ms` late


@dataclass(frozen=True, slots=True)
class ExchangeFault:
    kind: Fault = Fault.NONE
    after_chunks: int = 0
    delay_ms: int = 0


NO_FAULT = ExchangeFault()


class SimulatedDeployment:
    """Opens exchanges to the SDK app for the invoker (its `transport`), counting each invocation's attempts."""

    def __init__(self, app: SdkApp, source: FaultSource, choose_fault: Callable[[str, int], ExchangeFault]) -> None:
        self.app = app
        self.source = source
        self.choose_fault = choose_fault
        self.attempts: dict[str, int] = {}
        self.open_exchanges: set[SdkExchange] = set()
        self.app_tasks: set[asyncio.Task[None]] = set()  # held until done, as an HTTP server holds its request tasks

    def __call__(self, deployment: DeploymentEndpoint, path: str, headers: list[tuple[str, str]]) -> SdkExchange:
        invocation_id = dict(headers)["x-restate-invocation-id"]
        attempt = self.attempts.get(invocation_id, 0) + 1
        self.attempts[invocation_id] = attempt
        info = AttemptInfo(self.source, invocation_id, attempt)
        return SdkExchange(self, path, headers, info, self.choose_fault(invocation_id, attempt))

    async def close(self) -> None:
        for exchange in list(self.open_exchanges):
            await exchange.close()
        for task in list(self.app_tasks):
            task.cancel()
        await asyncio.gather(*self.app_tasks, return_exceptions=True)


class SdkExchange:
    def __init__(
        self, deployment: SimulatedDeployment, path: str, headers: list[tuple[str, str]], info: AttemptInfo, fault: ExchangeFault
    ) -> None:
        self._deployment = deployment
        self._path = path
        self._headers = headers
        self._info = info
        self._fault = fault
        self._request: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._response: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._app: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._delivered = 0
        self._request_ended = False

    async def open(self) -> None:
        if self._fault.kind is Fault.REFUSE:
            raise ExchangeError(f"connection to the simulated deployment refused (attempt {self._info.attempt})")
        scope = {
            "type": "http",
            "http_version": "2",
            "method": "POST",
            "path": self._path,
            "headers": [(name.encode(), value.encode()) for name, value in self._headers],
        }
        context = contextvars.copy_context()
        context.run(CURRENT.set, self._info)
        self._app = asyncio.get_running_loop().create_task(self._deployment.app(scope, self._receive, self._send), context=context)
        self._deployment.app_tasks.add(self._app)
        self._app.add_done_callback(self._deployment.app_tasks.discard)
        self._deployment.open_exchanges.add(self)

    async def _receive(self) -> dict[str, Any]:
        if self._request_ended:
            await self._closed.wait()  # after the end of the body, only a disconnect is left to receive
            return {"type": "http.disconnect"}
        getter = asyncio.ensure_future(self._request.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait([getter, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if not getter.done():
            getter.cancel()
            return {"type": "http.disconnect"}
        chunk = getter.result()
        if chunk is None:
            self._request_ended = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _send(self, message: dict[str, Any]) -> None:
        if self._closed.is_set():
            raise OSError("the runtime closed the stream")
        self._response.put_nowait(message)

    async def send(self, data: bytes) -> None:
        self._check_open()
        self._request.put_nowait(data)

    async def end(self) -> None:
        self._check_open()
        self._request.put_nowait(None)

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        try:
            async with asyncio.timeout(None if timeout_ms is None else timeout_ms / 1000):
                if self._fault.kind is Fault.SILENT:
                    await self._closed.wait()
                    raise ExchangeError("the simulated deployment's stream was closed before it answered")
                message = await self._next()
        except TimeoutError:
            raise ExchangeError(f"no response headers within {timeout_ms} ms") from None
        assert message["type"] == "http.response.start", message
        headers = [(name.decode(), value.decode()) for name, value in message.get("headers", [])]
        return int(message["status"]), headers

    async def chunks(self) -> AsyncIterator[bytes]:
        fault = self._fault
        while True:
            if fault.kind is Fault.DROP and self._delivered >= fault.after_chunks:
                await self.close()
                raise ExchangeError(f"the connection to the simulated deployment broke after {self._delivered} chunks")
            if fault.kind is Fault.STALL and self._delivered >= fault.after_chunks:
                await self._closed.wait()
                raise ExchangeError("the stalled stream was closed")
            if fault.kind is Fault.GARBAGE and self._delivered >= fault.after_chunks:
                self._delivered += 1
                yield b"\x7f\x7f\x00\x00\x00\x00\x00\x04junk"
                continue
            message = await self._next()
            if fault.kind is Fault.SLOW:
                await asyncio.sleep(fault.delay_ms / 1000)
            body = message.get("body", b"")
            if body:
                self._delivered += 1
                yield body
            if not message.get("more_body", False):
                return

    async def _next(self) -> dict[str, Any]:
        getter = asyncio.ensure_future(self._response.get())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait([getter, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        raise ExchangeError("the stream to the simulated deployment was closed")

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ExchangeError("the stream to the simulated deployment is closed")

    async def close(self) -> None:
        """Reset the stream: the SDK app sees a disconnect; one still running a second later is cancelled."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._deployment.open_exchanges.discard(self)
        app = self._app
        if app is not None and not app.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(app), 1.0)
            if not app.done():
                app.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await app
