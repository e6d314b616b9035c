"""The node's one way to stop: a graceful phase capped by `shutdown_timeout_ms`, then a close capped by `close_timeout_ms`.

A stop is requested by a signal (`request_stop`: graceful) or by a component
that died (`fail`: fatal, exit status 1). The graceful phase runs the steps
registered with `on_graceful` (stop accepting and finish in-flight requests;
on Kafka, hand the partitions over) concurrently, and ends when they are done
or when `shutdown_timeout_ms` has passed, whichever comes first; a fatal
error, or a second signal, skips or cuts it short. Then the node closes its
parts. From the moment a stop is requested a watchdog thread bounds the whole
way out: if the process still lives `shutdown_timeout_ms + close_timeout_ms`
later (a close that hangs, an event loop that is blocked), it logs why and
ends the process with `EXIT_STUCK`. So there is no state in which the node
has closed its ports and the process lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

log = logging.getLogger("duro.node")

EXIT_OK: Final = 0
EXIT_FATAL: Final = 1  # a component died; the log says which and why
EXIT_STUCK: Final = 3  # the way out overran its bound and the watchdog ended the process

T = TypeVar("T")
GracefulStep = Callable[[], Awaitable[None]]


class Lifecycle:
    """Stop requests, the bounded graceful phase and the watchdog of one node process."""

    def __init__(self, shutdown_timeout_ms: int, close_timeout_ms: int, hard_exit: Callable[[int], None] = os._exit) -> None:
        self.shutdown_timeout_ms = shutdown_timeout_ms
        self.close_timeout_ms = close_timeout_ms
        self._hard_exit = hard_exit
        self.stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()  # set by a fatal error or a second signal: the graceful phase ends now
        self._graceful_steps: list[tuple[str, GracefulStep]] = []
        self._watchdog: threading.Timer | None = None
        self.exit_code = EXIT_OK
        self.reason = ""

    @property
    def fatal(self) -> bool:
        return self.exit_code != EXIT_OK

    def on_graceful(self, name: str, step: GracefulStep) -> None:
        """Run `step` in the graceful phase (all steps run concurrently; the phase's cap cancels what is left)."""
        self._graceful_steps.append((name, step))

    def request_stop(self, why: str) -> None:
        """A graceful stop (SIGTERM, SIGINT); asked a second time, the graceful phase ends at once."""
        if self.stop_requested.is_set():
            log.warning("%s again: skipping the rest of the graceful shutdown", why)
            self._hurry.set()
            return
        log.info("%s: stopping gracefully within %d ms (shutdown_timeout_ms)", why, self.shutdown_timeout_ms)
        self._begin(why, self.shutdown_timeout_ms)

    def fail(self, why: str) -> None:
        """A fatal error: the node stops at once (waiting requests are answered 503) and exits with status 1."""
        if self.exit_code == EXIT_OK:
            log.critical("fatal: %s; the node stops and exits with status %d within %d ms", why, EXIT_FATAL, self.close_timeout_ms)
            self.exit_code = EXIT_FATAL
        self._hurry.set()
        if not self.stop_requested.is_set():
            self._begin(why, 0)

    def _begin(self, why: str, graceful_ms: int) -> None:
        self.reason = why
        self.stop_requested.set()
        bound_s = (graceful_ms + self.close_timeout_ms) / 1000
        self._watchdog = threading.Timer(bound_s, self._expire, args=(bound_s,))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self, bound_s: float) -> None:
        log.critical("the node did not finish stopping within %.1f s (%s); ending the process now", bound_s, self.reason)
        logging.shutdown()
        self._hard_exit(EXIT_STUCK)

    def closing(self, name: str, close: Callable[[], Awaitable[None] | None]) -> Callable[[], Awaitable[None]]:
        """`close` as a step of the way out: a failure is logged in one line and makes the exit status 1, and the next step runs."""

        async def step() -> None:
            try:
                result = close()
                if result is not None:
                    await result
            except Exception as error:
                log.error("closing %s failed: %r", name, error)
                if self.exit_code == EXIT_OK:
                    self.exit_code = EXIT_FATAL

        return step

    def cancel_watchdog(self) -> None:
        """The node has closed everything: the process may exit normally."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def unless_stopped(self, awaitable: Awaitable[T]) -> T | None:
        """Await `awaitable` (e.g. start-up work), or give up on it when a stop is requested first (None)."""
        work = asyncio.ensure_future(awaitable)
        if self.stop_requested.is_set():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            return None
        stopped = asyncio.ensure_future(self.stop_requested.wait())
        try:
            await asyncio.wait([work, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
        return work.result() if work.done() and not work.cancelled() else None

    async def graceful_phase(self) -> None:
        """Run the graceful steps until they finish, `shutdown_timeout_ms` passes or the stop turns into a hurry."""
        if self._hurry.is_set() or not self._graceful_steps:
            return
        steps = {asyncio.ensure_future(step()): name for name, step in self._graceful_steps}
        all_done = asyncio.ensure_future(asyncio.wait(steps))
        hurry = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait([all_done, hurry], timeout=self.shutdown_timeout_ms / 1000, return_when=asyncio.FIRST_COMPLETED)
        all_done.cancel()
        hurry.cancel()
        late = [name for task, name in steps.items() if not task.done()]
        if late:
            log.warning("graceful shutdown cut short; still running: %s", ", ".join(late))
        for task, name in steps.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("graceful shutdown step %s failed: %r", name, task.exception())
            task.cancel()
        await asyncio.gather(*steps, all_done, hurry, return_exceptions=True)
