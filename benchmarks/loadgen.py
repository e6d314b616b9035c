"""Closed-loop HTTP load generator on aiohttp: N concurrent workers, a warm-up, then a measured window bounded in time and count.

Each worker sends one request after another. A request is a sample if it
completes inside the measured window (whenever it started: with long requests,
counting only those that also started inside would undercount the window's
throughput); the window ends when `duration_s` has passed or `max_requests`
samples were taken. Window probes
(`begin()`/`end()`, e.g. CPU counters of the processes under test) are called
at the window's edges. After the window, workers finish their request in
flight (bounded by `request_timeout_s`), so every accepted request is counted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

JSON_HEADERS: Mapping[str, str] = {"content-type": "application/json"}


@dataclass(frozen=True)
class Request:
    """One POST to the ingress: a path (with a leading slash), a body, headers (no body, no content-type)."""

    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expected_status: int = 200


RequestFactory = Callable[[int], Request]


class WindowProbe(Protocol):
    def begin(self) -> None: ...

    def end(self) -> None: ...


@dataclass(frozen=True)
class LoadLimits:
    concurrency: int = 32
    warmup_s: float = 5.0
    duration_s: float = 30.0
    max_requests: int = 1_000_000
    request_timeout_s: float = 30.0
    max_errors: int = 100

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.warmup_s < 0 or self.duration_s <= 0:
            raise ValueError(f"warmup_s must be >= 0 and duration_s > 0, got {self.warmup_s} and {self.duration_s}")
        if self.max_requests < 1 or self.max_errors < 1:
            raise ValueError(f"max_requests and max_errors must be at least 1, got {self.max_requests} and {self.max_errors}")


@dataclass
class LoadResult:
    latencies_s: list[float]
    window_s: float
    requests_sent: int
    requests_ok: int
    errors: Counter[str]
    aborted: str | None = None

    @property
    def throughput_per_s(self) -> float:
        return len(self.latencies_s) / self.window_s if self.window_s > 0 else 0.0


class _Phase:
    """Shared state of one load run: the window's edges, the samples and the counters."""

    def __init__(self, limits: LoadLimits) -> None:
        self.limits = limits
        self.measuring = False
        self.stop = asyncio.Event()
        self.window_done = asyncio.Event()
        self.latencies_s: list[float] = []
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.ok = 0
        self.aborted: str | None = None

    def record(self, latency_s: float, error: str | None) -> None:
        if error is not None:
            self.errors[error] += 1
            if sum(self.errors.values()) >= self.limits.max_errors and self.aborted is None:
                self.aborted = f"{self.limits.max_errors} errors, the last: {error}"
                self.window_done.set()
                self.stop.set()
            return
        self.ok += 1
        if self.measuring:
            self.latencies_s.append(latency_s)
            if len(self.latencies_s) >= self.limits.max_requests:
                self.window_done.set()


async def _send(session: aiohttp.ClientSession, base_url: str, request: Request) -> str | None:
    """Sends one request; returns None on the expected status, else a short error label."""
    try:
        async with session.post(base_url + request.path, data=request.body, headers=request.headers) as response:
            await response.read()
            if response.status != request.expected_status:
                return f"HTTP {response.status}"
            return None
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as exc:
        return type(exc).__name__


async def _worker(
    session: aiohttp.ClientSession, base_url: str, factory: RequestFactory, sequence: itertools.count[int], phase: _Phase
) -> None:
    while not phase.stop.is_set():
        request = factory(next(sequence))
        phase.sent += 1
        started = time.perf_counter()
        error = await _send(session, base_url, request)
        phase.record(time.perf_counter() - started, error)


async def _control(phase: _Phase, probes: Sequence[WindowProbe]) -> float:
    """Runs warm-up and window; returns the window's length in seconds."""
    limits = phase.limits
    try:
        await asyncio.wait_for(phase.stop.wait(), timeout=limits.warmup_s)
    except TimeoutError:
        pass
    for probe in probes:
        probe.begin()
    window_start = time.perf_counter()
    phase.measuring = True
    try:
        await asyncio.wait_for(phase.window_done.wait(), timeout=limits.duration_s)
    except TimeoutError:
        pass
    window_end = time.perf_counter()
    phase.measuring = False
    phase.stop.set()
    for probe in probes:
        probe.end()
    return window_end - window_start


async def run_load(base_url: str, factory: RequestFactory, limits: LoadLimits, probes: Sequence[WindowProbe] = ()) -> LoadResult:
    """Drives `factory(0), factory(1), ...` against `base_url` with `limits.concurrency` workers."""
    phase = _Phase(limits)
    sequence = itertools.count()
    connector = aiohttp.TCPConnector(limit=limits.concurrency, limit_per_host=limits.concurrency)
    timeout = aiohttp.ClientTimeout(total=limits.request_timeout_s)
    # A handler without input rejects any content-type; aiohttp would add one to every body-less POST.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=("Content-Type",)) as session:
        workers = [asyncio.create_task(_worker(session, base_url, factory, sequence, phase)) for _ in range(limits.concurrency)]
        window_s = await _control(phase, probes)
        _, pending = await asyncio.wait(workers, timeout=limits.request_timeout_s + 1)
        for task in pending:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return LoadResult(phase.latencies_s, window_s, phase.sent, phase.ok, phase.errors, phase.aborted)


async def run_count(
    base_url: str, factory: RequestFactory, count: int, concurrency: int, timeout_s: float, request_timeout_s: float = 30.0
) -> LoadResult:
    """Completes `count` requests (no warm-up) or stops at `timeout_s`; used by the memory scenario."""
    limits = LoadLimits(
        concurrency=concurrency,
        warmup_s=0.0,
        duration_s=timeout_s,
        max_requests=count,
        request_timeout_s=request_timeout_s,
        max_errors=max(100, count // 100),
    )
    return await run_load(base_url, factory, limits)
