"""The invoker: runs invocation attempts against deployments over the service protocol.

For each `InvokeAttempt` action it reads the invocation's journal from the
committed store, opens `POST {deployment}/invoke/{service}/{handler}`, sends
`Start` and the journal, and appends every message the SDK sends back to the
partition's log as `AttemptEvents` records. In bidirectional mode (HTTP/2) it
keeps the request open and writes each notification the leader hands it
(`Notify`, only after the notification was applied); in request/response mode
it closes the request after the journal and the SDK suspends when it must wait.
Every way an attempt ends is a record the state machine applies: End,
Suspension and Error are `AttemptEvents`; a transport failure, a protocol
violation, a bad status, the abort timeout, a node that stops, and a
cancellation nobody asked for are `AttemptFailed` (the state machine decides
when to retry). Only an attempt that no longer needs a record ends without
one: superseded by a newer attempt, ended by apply (its invocation completed)
or left behind by a leader that stepped down (the next leader restarts it).
`accounts_for` lets the partition check that no invocation is running without
a live attempt or a recorded end.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import msgpack
from opentelemetry.trace import Span, SpanContext, Tracer

from partition_worker import keys, log_context, metrics, tracing
from partition_worker.actions import Notify
from partition_worker.deployments import DeploymentDirectory, DeploymentEndpoint, HandlerInfo
from partition_worker.exchange import Exchange, ExchangeError, H2Exchange, Http1Exchange
from partition_worker.settings import InvokerSettings
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import PartitionStore
from protocol import service_protocol_pb2 as pb
from protocol.error_codes import InvocationErrorCode as Code
from protocol.errors import FrameTooLargeError, ProtocolError
from protocol.frames import Frame, FrameDecoder, MessageType, decode_message, encode_frame, encode_message
from protocol.h2c import H2cClient
from protocol.ids import InvocationId
from protocol.request_identity import RequestSigner
from protocol.versions import invocation_content_type, negotiate
from wal.log import AppendTooLargeError, LogClosedError, LogError
from wal.records import AttemptEvents, AttemptFailed, AttemptFrame, Failure, RecordBody, Target

log = logging.getLogger("duro.invoker")

TERMINAL_TYPES = frozenset({MessageType.END, MessageType.SUSPENSION, MessageType.ERROR})
NO_REPLY_TYPES = frozenset(
    {
        MessageType.GET_EAGER_STATE_COMMAND,
        MessageType.GET_EAGER_STATE_KEYS_COMMAND,
        MessageType.SET_STATE_COMMAND,
        MessageType.CLEAR_STATE_COMMAND,
        MessageType.CLEAR_ALL_STATE_COMMAND,
        MessageType.OUTPUT_COMMAND,
    }
)
"""Commands the runtime answers nothing to: the SDK goes on without waiting for them, so their append may wait for what follows."""


Transport = Callable[[DeploymentEndpoint, str, list[tuple[str, str]]], Exchange]
"""Makes the exchange of one attempt: (deployment, request path, request headers) -> an exchange not yet opened."""


class PartitionLeader(Protocol):
    """What an attempt needs of the partition it belongs to."""

    @property
    def partition(self) -> int: ...

    @property
    def leader_epoch(self) -> int: ...

    @property
    def store(self) -> PartitionStore: ...

    async def append(self, body: RecordBody) -> int:
        """Append a record on behalf of this leader (its epoch); returns its log offset once durable."""
        ...


class AttemptError(Exception):
    """An attempt failed in a way the state machine should see (and retry)."""

    def __init__(self, failure: Failure, retry_after_ms: int | None = None) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True, slots=True)
class _Stop:
    """Why the invoker stopped an attempt itself: `failure` is recorded as AttemptFailed (`terminal`: not retried); None records nothing."""

    failure: Failure | None
    terminal: bool = False


_NO_RECORD = _Stop(None)
STOPPED = Code.UNAVAILABLE  # failure code of an attempt the invoker stopped (timeout, node stopping, overflow): retried by policy
MESSAGE_TOO_LARGE = Code.INTERNAL  # failure code of an invocation whose deployment sent a message over max_frame_bytes: not retried


@dataclass(eq=False)
class _Attempt:
    invocation_id: str
    attempt: int
    leader: PartitionLeader
    notifications: asyncio.Queue[Notify] | None = None  # made at the first notification (most attempts get none)
    writer: asyncio.Task[None] | None = None  # writes notifications into an open bidirectional request; started with the first
    notify_exchange: Exchange | None = None  # the bidirectional request notifications go to, once its response began
    task: asyncio.Task[None] | None = None
    known_entries: int = 0
    pinned: bool = False
    deployment: DeploymentEndpoint | None = None
    protocol_version: int = 0
    last_activity: float = 0.0  # loop time (asyncio) of the last message either way
    request_closed: bool = False
    exchange: Exchange | None = None
    target: Target | None = None  # known once the attempt has read the invocation's status
    opened_at: float = 0.0
    outcome: str = metrics.ABORTED  # what `duro_invoker_attempts_total` counts when the attempt ends
    output_failed: bool | None = None  # set when the SDK sent its output: whether it was a failure
    stop: _Stop | None = None  # set when the invoker stops the attempt, saying what to record
    started: bool = False  # its task has begun running (a task cancelled before that would never run its cleanup)
    last_offset: int | None = None  # log offset of the last record this attempt appended
    span: Span | None = None  # with tracing: the attempt's span
    trace_parent: SpanContext | None = None  # with tracing: the invocation's parent (the ingress span, or a derived root)
    created_at_ms: int = 0
    server: str | None = None  # the deployment's x-restate-server answer header, recorded with the attempt's first events
    server_recorded: bool = False

    async def close_request(self, exchange: Exchange) -> None:
        """End the request body once (after a terminal message, or when the attempt idles)."""
        if not self.request_closed:
            self.request_closed = True
            await exchange.end()


class Invoker:
    def __init__(
        self,
        directory: DeploymentDirectory,
        settings: InvokerSettings | None = None,
        clock_ms: Callable[[], int] | None = None,
        tracer: Tracer | None = None,
        signer: RequestSigner | None = None,
        transport: Transport | None = None,
    ) -> None:
        """`tracer` (None: no tracing) emits invocation and attempt spans; its provider must generate ids with `tracing.ChosenSpanIds`.

        `signer` (None: requests are unsigned) adds Restate's request identity to every request to a deployment.
        `transport` (None: HTTP/2 or HTTP/1.1 over the network) makes the exchange of an attempt; the simulator passes its own.
        """
        self._transport = transport
        self.directory = directory
        self._signer = signer
        self._tracer = tracer
        self.settings = settings or InvokerSettings()
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._h2 = H2cClient(
            max_connections_per_origin=self.settings.max_connections_per_origin,
            connect_timeout_ms=self.settings.connect_timeout_ms,
            ping_interval_ms=self.settings.h2_ping_interval_ms,
            ping_timeout_ms=self.settings.h2_ping_timeout_ms,
            max_stream_timeouts_per_connection=self.settings.max_stream_timeouts_per_connection,
            max_closed_streams_per_connection=self.settings.h2_max_closed_streams_per_connection,
        )
        self._http1: aiohttp.ClientSession | None = None
        self._attempts: dict[str, _Attempt] = {}
        self._ended: dict[str, tuple[int, int, int]] = {}  # invocation id -> (partition, attempt, offset of its last record)
        self._slots = asyncio.Semaphore(self.settings.max_concurrent_attempts)
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the attempts run on, looked up once: in CPython 3.11 each `asyncio.get_running_loop()` makes a getpid system call."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @property
    def running_count(self) -> int:
        return len(self._attempts)

    @property
    def draining(self) -> bool:
        """True once `drain` began: no attempt starts any more, so running invocations may lack one."""
        return self._draining

    def accounts_for(self, partition: int, invocation_id: str, attempt: int, applied_offset: int) -> bool:
        """True if attempt `attempt` runs here, or ended with a record the partition has not applied yet (at or before `applied_offset`)."""
        handle = self._attempts.get(invocation_id)
        if handle is not None and handle.attempt == attempt and handle.task is not None and not handle.task.done():
            return True
        ended = self._ended.get(invocation_id)
        return ended is not None and ended[0] == partition and ended[1] == attempt and ended[2] > applied_offset

    def forget_ended(self, partition: int, applied_offset: int) -> None:
        """Drop the recorded ends of `partition` that it has applied (at or before `applied_offset`)."""
        for invocation_id, (ended_partition, _, offset) in list(self._ended.items()):
            if ended_partition == partition and offset <= applied_offset:
                del self._ended[invocation_id]

    def _stop(self, handle: _Attempt, stop: _Stop) -> None:
        """Stop an attempt, saying what to record; one that has not begun yet sees `stop` when it begins, and ends there."""
        if handle.stop is None:
            handle.stop = stop
        if handle.started and handle.task is not None and not handle.task.done():
            handle.task.cancel()

    # ------------------------------------------------------------ leader-facing API

    def start(self, leader: PartitionLeader, invocation_id: str, attempt: int) -> None:
        """Begin an attempt (superseding any older one of the same invocation). Does not block.

        While the node drains, no attempt starts: the invocation stays invoked
        and the partition's next leader starts it.
        """
        if self._draining:
            return
        previous = self._attempts.get(invocation_id)
        if previous is not None:
            self._stop(previous, _NO_RECORD)  # the newer attempt is in the log already
        handle = _Attempt(invocation_id, attempt, leader)
        self._attempts[invocation_id] = handle
        handle.task = self.event_loop().create_task(self._run(handle), name=f"attempt {invocation_id}#{attempt}")

    def notify(self, action: Notify) -> None:
        handle = self._attempts.get(action.invocation_id)
        if handle is None or handle.attempt != action.attempt:
            return  # request/response attempt, or one that has ended: the journal has it
        if handle.notifications is None:
            handle.notifications = asyncio.Queue(self.settings.max_pending_notifications)
        try:
            handle.notifications.put_nowait(action)
        except asyncio.QueueFull:
            message = (
                f"the attempt stopped reading notifications: {handle.notifications.maxsize} undelivered"
                f" (max_pending_notifications={self.settings.max_pending_notifications})"
            )
            log.warning("attempt %s#%d: %s; abandoning it", action.invocation_id, action.attempt, message)
            self._stop(handle, _Stop(Failure(STOPPED, message)))
            return
        self._start_writer(handle)

    def _start_writer(self, handle: _Attempt) -> None:
        """Write the attempt's notifications into its bidirectional request, once both exist (a task, started once)."""
        if handle.writer is None and handle.notify_exchange is not None and handle.notifications is not None:
            handle.writer = asyncio.create_task(self._write_notifications(handle, handle.notify_exchange, handle.notifications))
            handle.writer.add_done_callback(lambda task: self._writer_ended(handle, task))

    def _writer_ended(self, handle: _Attempt, task: asyncio.Task[None]) -> None:
        """A notification writer that failed stops its attempt at once (retried by policy), rather than leaving the SDK
        waiting for a completion that never comes until the inactivity and abort timeouts end it.

        Unless its stream or connection failed (ExchangeError): the reader then sees that failure too, but only after
        it has taken what arrived before it, so an End the SDK sent just before resetting the stream is recorded
        (stopping the attempt here could cancel the reader before it took the End, and the ended attempt ran again).
        """
        if task.cancelled() or (error := task.exception()) is None:
            return
        if handle.request_closed or isinstance(error, ExchangeError):
            # ended on purpose (idle, or the node drains): the SDK suspends, the journal has the notification; or the
            # stream failed: the reader takes what arrived, then ends the attempt with the stream's failure
            log.debug("attempt %s#%d: a notification was not written (%s)", handle.invocation_id, handle.attempt, error)
            return
        message = f"writing a notification into the attempt's request failed ({type(error).__name__}: {error})"
        log.warning("attempt %s#%d: %s; stopping it", handle.invocation_id, handle.attempt, message)
        self._stop(handle, _Stop(Failure(STOPPED, message)))

    def abort(self, invocation_id: str, attempt: int) -> None:
        """Apply ended the attempt (its invocation completed, was killed or moved on): stop it without a record."""
        handle = self._attempts.get(invocation_id)
        if handle is not None and handle.attempt == attempt:
            self._stop(handle, _NO_RECORD)

    def abort_partition(self, partition: int) -> None:
        """Stop every attempt of a partition this node no longer leads; the next leader restarts them (a record would be fenced)."""
        for handle in list(self._attempts.values()):
            if handle.leader.partition == partition:
                self._stop(handle, _NO_RECORD)
        for invocation_id, ended in list(self._ended.items()):
            if ended[0] == partition:
                del self._ended[invocation_id]

    async def drain(self, timeout_s: float) -> tuple[int, int]:
        """Start no new attempt; let the running ones end or suspend, then abort what is left after `timeout_s`.

        Each running attempt's request stream is closed at once, so an SDK that
        waits for a notification suspends instead of waiting; an attempt still
        running at the timeout is stopped and recorded as failed, so that it is
        retried by its policy (by this partition's next leader, once it has
        one). Returns (ended, aborted).
        """
        self._draining = True
        handles = list(self._attempts.values())
        for handle in handles:
            if handle.exchange is not None and not handle.request_closed:
                try:
                    await handle.close_request(handle.exchange)
                except ExchangeError:
                    pass  # the stream is already gone: the attempt ends on its own
        tasks = [h.task for h in handles if h.task is not None]
        if not tasks:
            return 0, 0
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        stopping = _Stop(Failure(STOPPED, "the node stopped before the attempt ended (shutdown.attempt_drain_timeout_ms)"))
        for handle in handles:
            if handle.task in pending:
                self._stop(handle, stopping)
        await asyncio.gather(*pending, return_exceptions=True)
        return len(tasks) - len(pending), len(pending)

    async def close(self) -> None:
        """Stop every attempt, recording that the node stopped (the log may refuse: then the next leader restarts them)."""
        stopping = _Stop(Failure(STOPPED, "the node stopped before the attempt ended"))
        for handle in list(self._attempts.values()):
            self._stop(handle, stopping)
        await asyncio.gather(*(h.task for h in list(self._attempts.values()) if h.task), return_exceptions=True)
        await self._h2.aclose()
        if self._http1 is not None:
            await self._http1.close()

    # ------------------------------------------------------------ one attempt

    async def _run(self, handle: _Attempt) -> None:
        log_context.partition.set(handle.leader.partition)
        log_context.invocation_id.set(handle.invocation_id)
        handle.started = True
        metrics.inflight_attempts.inc()
        try:
            if handle.stop is not None:
                raise asyncio.CancelledError  # stopped before it began: end as if cancelled now
            async with self._slots:
                await self._attempt(handle)
        except asyncio.CancelledError:
            # counted as aborted unless End, Suspension or Error was seen before (the leader may cancel an ended attempt)
            stop = handle.stop
            if stop is None:
                log.error("attempt %s#%d was cancelled without a reason; recording it as failed", handle.invocation_id, handle.attempt)
                stop = _Stop(Failure(Code.INTERNAL, "the attempt's task was cancelled without a reason"))
            if stop.failure is not None:
                await self._report_failure(handle, stop.failure, None, terminal=stop.terminal)
        except AttemptError as exc:
            handle.outcome = metrics.FAILED
            log.warning("attempt %s#%d failed: %s", handle.invocation_id, handle.attempt, exc.failure.message)
            await self._report_failure(handle, exc.failure, exc.retry_after_ms)
        except FrameTooLargeError as exc:  # sending it again cannot help: the invocation fails, its caller gets this
            handle.outcome = metrics.FAILED
            log.warning("attempt %s#%d failed for good: %s", handle.invocation_id, handle.attempt, exc)
            await self._report_failure(handle, Failure(MESSAGE_TOO_LARGE, f"the deployment sent a {exc}"), None, terminal=True)
        except (ExchangeError, ProtocolError) as exc:
            handle.outcome = metrics.FAILED
            log.warning("attempt %s#%d failed: %s", handle.invocation_id, handle.attempt, exc)
            code = Code.PROTOCOL_VIOLATION if isinstance(exc, ProtocolError) else Code.UNAVAILABLE
            await self._report_failure(handle, Failure(code, str(exc)), None)
        except LogError as exc:  # an append of the attempt's messages was refused
            failure, terminal = self._append_failed(handle, exc)
            await self._report_failure(handle, failure, None, terminal=terminal)
        except Exception:  # an invoker bug must not take the node down; the state machine retries
            handle.outcome = metrics.FAILED
            log.exception("attempt %s#%d crashed", handle.invocation_id, handle.attempt)
            failure = Failure(Code.INTERNAL, "the invoker failed unexpectedly; the node's log has the traceback")
            await self._report_failure(handle, failure, None)
        finally:
            metrics.inflight_attempts.dec()
            _observe_end(handle)
            if self._tracer is not None:
                self._end_spans(self._tracer, handle)
            if self._attempts.get(handle.invocation_id) is handle:
                del self._attempts[handle.invocation_id]
                if handle.last_offset is not None:
                    self._ended[handle.invocation_id] = (handle.leader.partition, handle.attempt, handle.last_offset)

    def _append_failed(self, handle: _Attempt, error: LogError) -> tuple[Failure, bool]:
        """What to record for an attempt whose messages the log refused, and whether it is terminal (logged here).

        A record over the log's limit fails the invocation for good (sending it
        again cannot help); any other refusal is retried, and what was not
        appended is sent again by the next attempt.
        """
        handle.outcome = metrics.FAILED
        if isinstance(error, AppendTooLargeError):
            log.warning("attempt %s#%d failed for good: %s", handle.invocation_id, handle.attempt, error)
            return Failure(MESSAGE_TOO_LARGE, f"the attempt's messages do not fit the log: {error}"), True
        log.warning("attempt %s#%d failed: the log refused its messages: %s", handle.invocation_id, handle.attempt, error)
        return Failure(Code.UNAVAILABLE, f"the log refused the attempt's messages: {error}"), False

    async def _report_failure(self, handle: _Attempt, failure: Failure, retry_after_ms: int | None, terminal: bool = False) -> None:
        deployment_id = handle.deployment.deployment_id if handle.deployment and not handle.pinned else None
        version = handle.protocol_version or None
        body = AttemptFailed(handle.invocation_id, handle.attempt, failure, retry_after_ms, deployment_id, version, terminal)
        await self._append_end(handle, body)

    async def _append_end(self, handle: _Attempt, body: RecordBody) -> None:
        """Append the record that ends an attempt; one the log refuses is tried again with backoff while its leader leads.

        Until it is appended the attempt counts as live (it holds its
        concurrency slot), so its invocation is never left running without
        one. A leader that steps down stops the attempt, which ends this; a
        closed log ends it too (the next leader restarts the invocation).
        """
        epoch = handle.leader.leader_epoch
        backoff_ms = self.settings.end_record_retry_initial_backoff_ms
        while True:
            try:
                handle.last_offset = await handle.leader.append(body)
                return
            except (LogClosedError, AppendTooLargeError) as exc:
                log.warning("could not record the end of attempt %s#%d: %s", handle.invocation_id, handle.attempt, exc)
                return
            except LogError as exc:
                if not epoch or handle.leader.leader_epoch != epoch:
                    return  # no longer the leader that ran it: the next one restarts the invocation
                log.warning(
                    "the end of attempt %s#%d was not appended (%s); trying again in %d ms",
                    handle.invocation_id,
                    handle.attempt,
                    exc,
                    backoff_ms,
                )
                await asyncio.sleep(backoff_ms / 1000)
                backoff_ms = min(2 * backoff_ms, self.settings.end_record_retry_max_backoff_ms)

    async def _attempt(self, handle: _Attempt) -> None:
        store = handle.leader.store
        raw = store.get(keys.invocation_key(handle.invocation_id))
        if raw is None:
            return
        status = InvocationStatus.decode(raw)
        if status.phase is not Phase.INVOKED or status.attempt != handle.attempt:
            return
        handle.target = status.target
        handle.opened_at = time.perf_counter()
        if status.retry_count > 0:
            metrics.retries.labels(status.target.service, status.target.handler).inc()
        deployment = self._pick_deployment(status)
        handle.deployment = deployment
        handle.pinned = status.deployment_id is not None
        handle.protocol_version = status.protocol_version or self._negotiate(deployment)
        info = self.directory.handler_info(status.target.service, status.target.handler)
        journal = [msgpack.unpackb(v) for _, v in store.scan(keys.journal_prefix(handle.invocation_id))]
        handle.known_entries = len(journal)
        trace_headers_: Iterable[tuple[str, str]] = ()
        if self._tracer is not None:
            trace_headers_ = self._start_span(self._tracer, handle, status, journal)
        start = self._start_message(handle.invocation_id, status, info, len(journal), handle.protocol_version, store)
        payload = bytearray(encode_message(start))
        for message_type, entry in journal:
            payload += encode_frame(message_type, entry)
        exchange = await self._open(deployment, status.target, handle.invocation_id, handle.protocol_version, trace_headers_)
        handle.last_activity = self.event_loop().time()
        watchdog = _InactivityWatch(self, handle, exchange, info)
        try:
            await exchange.send(bytes(payload))
            bidirectional = deployment.bidirectional and not deployment.use_http_11 and not self._draining
            if not bidirectional:
                await handle.close_request(exchange)  # HTTP/1.1: sends the request and waits for the response's head
            handle.exchange = exchange  # from here on drain() may close the request
            await self._exchange(handle, exchange, bidirectional)
        finally:
            watchdog.cancel()
            await exchange.close()

    def _pick_deployment(self, status: InvocationStatus) -> DeploymentEndpoint:
        if status.deployment_id is not None:
            deployment = self.directory.deployment(status.deployment_id)
            if deployment is None:
                raise AttemptError(
                    Failure(
                        Code.UNAVAILABLE, f"deployment {status.deployment_id}, which this invocation is pinned to, is no longer registered"
                    )
                )
            return deployment
        deployment = self.directory.latest_deployment_for(status.target.service)
        if deployment is None:
            raise AttemptError(Failure(Code.UNAVAILABLE, f"no deployment is registered for service {status.target.service!r}"))
        return deployment

    def _negotiate(self, deployment: DeploymentEndpoint) -> int:
        try:
            return negotiate(deployment.min_protocol_version, deployment.max_protocol_version, self.settings.max_protocol_version)
        except ValueError as exc:
            raise AttemptError(Failure(Code.UNAVAILABLE, f"deployment {deployment.deployment_id}: {exc}")) from exc

    def _start_message(
        self,
        invocation_id: str,
        status: InvocationStatus,
        info: HandlerInfo | None,
        known_entries: int,
        version: int,
        store: PartitionStore,
    ) -> pb.StartMessage:
        parsed = InvocationId.parse(invocation_id)
        start = pb.StartMessage(
            id=parsed.to_bytes(),
            debug_id=invocation_id,
            known_entries=known_entries,
            key=status.target.key or "",
            retry_count_since_last_stored_entry=status.retry_count,
            duration_since_last_stored_entry=max(0, self._clock_ms() - status.modified_at_ms),
        )
        if version >= 6:
            start.random_seed = int.from_bytes(hashlib.sha256(parsed.to_bytes()).digest()[:8], "big")
        if version >= 7 and status.idempotency_key is not None:
            start.idempotency_key = status.idempotency_key
        self._add_eager_state(start, status.target, info, store)
        return start

    def _add_eager_state(self, start: pb.StartMessage, target: Target, info: HandlerInfo | None, store: PartitionStore) -> None:
        if target.key is None or (info is not None and info.lazy_state):
            start.partial_state = True
            return
        prefix = keys.state_prefix(target.service, target.key)
        budget = self.settings.max_eager_state_bytes
        for row, value in store.scan(prefix):
            name = keys.state_name_of(row, prefix)
            budget -= len(name) + len(value)
            if budget < 0:
                del start.state_map[:]
                start.partial_state = True
                return
            start.state_map.add(key=name, value=value)
        start.partial_state = False

    def _start_span(self, tracer: Tracer, handle: _Attempt, status: InvocationStatus, journal: list[Any]) -> Iterable[tuple[str, str]]:
        """Open the attempt's span under the invocation's; returns the headers that hand it to the deployment."""
        input_entry = journal[0][1] if journal and journal[0][0] == MessageType.INPUT_COMMAND else None
        handle.trace_parent = tracing.parent_of(handle.invocation_id, input_entry)
        handle.created_at_ms = status.created_at_ms
        target = f"{status.target.service}/{status.target.handler}"
        handle.span = tracing.start_attempt_span(tracer, handle.invocation_id, handle.trace_parent, target, handle.attempt)
        return tracing.trace_headers(handle.span)

    def _end_spans(self, tracer: Tracer, handle: _Attempt) -> None:
        """End the attempt's span; when the invocation ended with it, emit the invocation's span too."""
        if handle.span is None or handle.target is None or handle.trace_parent is None:
            return
        handle.span.set_attribute(tracing.OUTCOME_ATTRIBUTE, handle.outcome)
        handle.span.end()
        if handle.outcome == metrics.COMPLETED and handle.output_failed is not None:
            target = f"{handle.target.service}/{handle.target.handler}"
            status = "failed" if handle.output_failed else "succeeded"
            tracing.emit_invocation_span(tracer, handle.invocation_id, handle.trace_parent, target, handle.created_at_ms, status)

    async def _open(
        self,
        deployment: DeploymentEndpoint,
        target: Target,
        invocation_id: str,
        version: int,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Exchange:
        parsed = urllib.parse.urlsplit(deployment.uri)
        base_path = parsed.path.rstrip("/")
        path = f"{base_path}/invoke/{urllib.parse.quote(target.service, safe='')}/{urllib.parse.quote(target.handler, safe='')}"
        content_type = invocation_content_type(version)
        headers = [("content-type", content_type), ("accept", content_type), ("x-restate-invocation-id", invocation_id)]
        if target.key is not None:
            headers.append(("x-restate-service-key", urllib.parse.quote(target.key, safe="")))
        headers.extend((name.lower(), value) for name, value in deployment.additional_headers.items())
        if self._signer is not None:
            headers.extend(self._signer.headers(path))
        headers.extend(extra_headers)
        exchange: Exchange
        if self._transport is not None:
            exchange = self._transport(deployment, path, headers)
        elif deployment.use_http_11:
            if self._http1 is None:
                self._http1 = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=None, connect=self.settings.connect_timeout_ms / 1000), auto_decompress=False
                )
            exchange = Http1Exchange(self._http1, f"{parsed.scheme}://{parsed.netloc}{path}", headers)
        else:
            exchange = H2Exchange(self._h2, f"{parsed.scheme}://{parsed.netloc}", path, headers)
        await exchange.open()
        return exchange

    async def _exchange(self, handle: _Attempt, exchange: Exchange, bidirectional: bool) -> None:
        if bidirectional:
            handle.notify_exchange = exchange
            self._start_writer(handle)
        try:
            status_code, headers = await exchange.status(self.settings.response_header_timeout_ms if bidirectional else None)
            handle.server = next((value for name, value in headers if name.lower() == "x-restate-server"), None)
            if status_code != 200:
                body = await _read_excerpt(exchange)
                raise AttemptError(_status_failure(status_code, body, handle), _retry_after_ms(headers))
            terminal = await self._read_messages(handle, exchange)  # at End/Suspension/Error it ended the request itself
            _stop_writer(handle)
            await handle.close_request(exchange)  # a response that ended without one: end the request too (no-op otherwise)
            if not terminal:
                raise AttemptError(Failure(Code.UNAVAILABLE, "the deployment closed the response without End, Suspension or Error"))
        finally:
            _stop_writer(handle)

    async def _read_messages(self, handle: _Attempt, exchange: Exchange) -> bool:
        """Append what the SDK sends, in order; True once End, Suspension or Error was seen.

        Reading does not wait for appends: messages go to the attempt's
        appender, which sends whatever has accumulated as one record whenever
        its previous append is durable. A ctx.run step (RunCommand, then its
        proposal a moment later) thus costs about one log round trip, not two
        back to back. Messages the SDK does not wait on (`NO_REPLY_TYPES`) are
        held up to `max_append_hold_ms` for what follows: a handler that reads
        its state, sets it and returns sends GetEagerState, then SetState,
        Output and End a moment later, and appends them as one record.
        """
        decoder = FrameDecoder(max_frame_bytes=self.settings.max_frame_bytes)
        appender = _AttemptAppender(self, handle)
        loop = self.event_loop()
        try:
            async for chunk in exchange.chunks():
                handle.last_activity = loop.time()
                frames = decoder.feed(chunk)
                if not frames:
                    continue
                terminal_at = next((i for i, f in enumerate(frames) if f.type in TERMINAL_TYPES), None)
                if terminal_at is not None:
                    frames = frames[: terminal_at + 1]
                if terminal_at is not None:
                    last = self._attempt_frames(handle, frames)
                    # The request ends now, not once the End is durable: the SDK then ends its response and the stream
                    # closes cleanly. Ended later, the leader (which stops the attempt when it applies the End) usually
                    # got there first and reset the stream; a Node endpoint ends a connection with GOAWAY after about
                    # 1,000 resets (nghttp2's reset rate limit), failing every attempt open on it.
                    _stop_writer(handle)
                    try:
                        await handle.close_request(exchange)
                    except ExchangeError as error:  # the SDK reset the stream after its response, or the connection closed
                        log.debug("attempt %s#%d: ending the request after its End failed: %s", handle.invocation_id, handle.attempt, error)
                    await appender.push_last(last)  # what the SDK sent is read whole: it is recorded all the same
                    return True
                if all(f.type in NO_REPLY_TYPES for f in frames):
                    appender.hold(self._attempt_frames(handle, frames))
                else:
                    appender.push(self._attempt_frames(handle, frames))
            decoder.finish()
            await appender.drain()
            return False
        finally:
            appender.close()

    def _attempt_frames(self, handle: _Attempt, frames: list[Frame]) -> list[AttemptFrame]:
        """Validate messages and annotate calls; a message that does not decode fails the attempt before anything is appended."""
        messages = [decode_message(f) for f in frames]  # raises ProtocolError
        for frame, message in zip(frames, messages, strict=True):
            if frame.type in _OUTCOME_OF_TERMINAL:
                handle.outcome = _OUTCOME_OF_TERMINAL[frame.type]
            elif frame.type == MessageType.OUTPUT_COMMAND:
                handle.output_failed = message.HasField("failure")
        return [self._attempt_frame(f, m) for f, m in zip(frames, messages, strict=True)]

    async def _append_frames(self, handle: _Attempt, frames: list[AttemptFrame]) -> None:
        deployment = handle.deployment
        assert deployment is not None, "an attempt picks its deployment before it talks to it"
        pin_id = None if handle.pinned else deployment.deployment_id
        pin_version = None if handle.pinned else handle.protocol_version
        server = None if handle.server_recorded else handle.server
        handle.last_offset = await handle.leader.append(
            AttemptEvents(handle.invocation_id, handle.attempt, tuple(frames), pin_id, pin_version, server)
        )
        handle.pinned = True
        handle.server_recorded = True

    def _attempt_frame(self, frame: Frame, message: object) -> AttemptFrame:
        """The frame as a record part; a Call or OneWayCall is annotated with its callee's kind, retry policy and retention."""
        if not isinstance(message, pb.CallCommandMessage | pb.OneWayCallCommandMessage):
            return AttemptFrame(frame.type, frame.flags, frame.payload)
        info = self.directory.handler_info(message.service_name, message.handler_name)
        policy = self.directory.call_policy(message.service_name, message.handler_name, message.HasField("idempotency_key"))
        if info is None or policy is None:
            return AttemptFrame(frame.type, frame.flags, frame.payload)  # an unknown callee: apply fails the call with 404
        target = Target(message.service_name, message.handler_name, None, info.service_type, info.handler_kind)
        retention = policy.retention
        return AttemptFrame(
            frame.type, frame.flags, frame.payload, target, policy.retry_policy, retention.completion_ms, retention.journal_ms
        )

    async def _write_notifications(self, handle: _Attempt, exchange: Exchange, notifications: asyncio.Queue[Notify]) -> None:
        while True:
            notify = await notifications.get()
            if 0 <= notify.entry_index < handle.known_entries:
                continue  # already part of the replayed journal
            await exchange.send(encode_frame(notify.message_type, notify.payload))
            handle.last_activity = self.event_loop().time()


class _InactivityWatch:
    """Inactivity, then abort: the same for both modes, on the event loop's timers (no task per attempt).

    After `inactivity_timeout_ms` without a message either way, the request
    is closed so that a bidirectional SDK suspends (a request/response one
    has its request closed already); if the attempt still has not ended
    `abort_timeout_ms` later, it is stopped and recorded as failed, so
    the state machine retries it by its policy. `cancel` ends the watch.
    """

    def __init__(self, invoker: Invoker, handle: _Attempt, exchange: Exchange, info: HandlerInfo | None) -> None:
        settings = invoker.settings
        self._invoker = invoker
        self._handle = handle
        self._exchange = exchange
        self._inactivity_ms = (
            info.inactivity_timeout_ms if info and info.inactivity_timeout_ms else None
        ) or settings.inactivity_timeout_ms
        self._abort_ms = (info.abort_timeout_ms if info and info.abort_timeout_ms else None) or settings.abort_timeout_ms
        self._loop = invoker.event_loop()
        self._closing: asyncio.Task[None] | None = None
        self._timer = self._loop.call_later(self._inactivity_ms / 1000, self._check)

    def cancel(self) -> None:
        self._timer.cancel()
        if self._closing is not None:
            self._closing.cancel()

    def _check(self) -> None:
        remaining_s = self._handle.last_activity + self._inactivity_ms / 1000 - self._loop.time()
        if remaining_s > _CLOCK_SLACK_S:  # asyncio wakes a timer up to its clock's resolution early: within a millisecond counts as due
            self._timer = self._loop.call_later(remaining_s, self._check)
            return
        handle = self._handle
        if not handle.request_closed:
            log.info(
                "attempt %s#%d inactive for %d ms: closing the request so it suspends",
                handle.invocation_id,
                handle.attempt,
                self._inactivity_ms,
            )
            self._closing = asyncio.create_task(self._close_request(), name=f"closing idle {handle.invocation_id}")
            self._closing.add_done_callback(self._closing_ended)
        self._timer = self._loop.call_later(self._abort_ms / 1000, self._abort)

    async def _close_request(self) -> None:
        try:
            await self._handle.close_request(self._exchange)
        except ExchangeError:
            pass  # the stream is gone: the reader sees that too

    def _closing_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:  # the abort timer still ends the attempt
            log.error("attempt %s#%d: closing its idle request failed", self._handle.invocation_id, self._handle.attempt, exc_info=error)

    def _abort(self) -> None:
        handle = self._handle
        message = (
            f"no end of the attempt {self._abort_ms} ms after {self._inactivity_ms} ms without a message"
            f" (inactivity_timeout_ms={self._inactivity_ms}, abort_timeout_ms={self._abort_ms})"
        )
        log.warning("attempt %s#%d stopped: %s", handle.invocation_id, handle.attempt, message)
        self._invoker._stop(handle, _Stop(Failure(STOPPED, message)))


_CLOCK_SLACK_S = 0.001

_OUTCOME_OF_TERMINAL: dict[int, str] = {
    MessageType.END: metrics.COMPLETED,
    MessageType.SUSPENSION: metrics.SUSPENDED,
    MessageType.ERROR: metrics.ERROR,
}


def _stop_writer(handle: _Attempt) -> None:
    """No more notifications go into the attempt's request (it ended, or the response did)."""
    handle.notify_exchange = None
    if handle.writer is not None:
        handle.writer.cancel()


def _observe_end(handle: _Attempt) -> None:
    """Count an attempt that got as far as reading its invocation (one that found nothing to do is not an attempt)."""
    if handle.target is None:
        return
    attempts, duration = metrics.attempt_series(handle.target.service, handle.target.handler, handle.outcome)
    attempts.inc()
    duration.observe(time.perf_counter() - handle.opened_at)
    if handle.outcome == metrics.COMPLETED and handle.output_failed is not None:
        metrics.invocation_series(handle.target.service, handle.target.handler, handle.output_failed).inc()


class _AttemptAppender:
    """Appends one attempt's messages in order, batching what arrives while the previous append is in flight.

    Its task starts with the first `push`; an attempt whose messages all come
    at once (`push_last` first: a handler that answers without waiting) appends
    them from the reader itself, together with any it `hold`s.
    """

    def __init__(self, invoker: Invoker, handle: _Attempt) -> None:
        self._invoker = invoker
        self._handle = handle
        self._pending: list[AttemptFrame] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._hold: asyncio.TimerHandle | None = None

    def hold(self, frames: list[AttemptFrame]) -> None:
        """Queue messages nobody waits on; they go with the next push, or on their own once `max_append_hold_ms` passed."""
        hold_ms = self._invoker.settings.max_append_hold_ms
        if not hold_ms or self._task is not None:
            self.push(frames)  # no hold, or an append is running anyway: whatever arrives meanwhile joins its next record
            return
        self._raise_if_failed()
        self._pending.extend(frames)
        self._idle.clear()
        if self._hold is None:
            self._hold = self._invoker.event_loop().call_later(hold_ms / 1000, self._release)

    def _release(self) -> None:
        """The hold is over: start appending what waits."""
        self._hold = None
        self.push([])

    def _cancel_hold(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None

    def push(self, frames: list[AttemptFrame]) -> None:
        self._cancel_hold()
        self._raise_if_failed()
        self._pending.extend(frames)
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = self._invoker.event_loop().create_task(
                self._run(), name=f"appender {self._handle.invocation_id}#{self._handle.attempt}"
            )

    async def push_last(self, frames: list[AttemptFrame]) -> None:
        """Push the attempt's last messages and wait until everything pushed is durable (raises what an append raised)."""
        self._cancel_hold()
        if self._task is not None:
            self.push(frames)
            await self.drain()
            return
        self._pending.extend(frames)
        while self._pending:
            await self._invoker._append_frames(self._handle, self._take_record())

    async def drain(self) -> None:
        """Wait until everything pushed or held is durable (raises what an append raised)."""
        if self._hold is not None:
            self._release()
        await self._idle.wait()
        self._raise_if_failed()

    def close(self) -> None:
        self._cancel_hold()
        if self._task is not None:
            self._task.cancel()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _take_record(self) -> list[AttemptFrame]:
        """The frames of the next record: as many pending ones as fit in max_frame_bytes together (always at least one).

        One frame is at most max_frame_bytes, which start-up checks against the
        log's append limit; so every record this writes fits in one append.
        """
        budget = self._invoker.settings.max_frame_bytes
        taken = 1
        size = len(self._pending[0].payload)
        while taken < len(self._pending) and size + len(self._pending[taken].payload) <= budget:
            size += len(self._pending[taken].payload)
            taken += 1
        frames, self._pending = self._pending[:taken], self._pending[taken:]
        return frames

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    frames = self._take_record()
                    await self._invoker._append_frames(self._handle, frames)
                self._idle.set()
        except Exception as exc:  # handed to the reader through drain()/push(); the attempt stops at once
            self._error = exc
            self._idle.set()
            handle = self._handle
            if isinstance(exc, LogError):
                stop = _Stop(*self._invoker._append_failed(handle, exc))
            else:
                log.error("attempt %s#%d: appending its messages failed", handle.invocation_id, handle.attempt, exc_info=exc)
                stop = _Stop(Failure(Code.INTERNAL, "the invoker failed unexpectedly; the node's log has the traceback"))
            self._invoker._stop(handle, stop)  # the SDK may wait for what the failed append carried (a run's completion)


async def _read_excerpt(exchange: Exchange, max_bytes: int = 512) -> bytes:
    excerpt = bytearray()
    try:
        async for chunk in exchange.chunks():
            excerpt += chunk
            if len(excerpt) >= max_bytes:
                break
    except ExchangeError:
        pass
    return bytes(excerpt[:max_bytes])


def _status_failure(status_code: int, body: bytes, handle: _Attempt) -> Failure:
    deployment = handle.deployment.deployment_id if handle.deployment else "?"
    text = body.decode("utf-8", "replace").strip()
    return Failure(status_code if 400 <= status_code < 600 else 502, f"deployment {deployment} answered HTTP {status_code}: {text}")


def _retry_after_ms(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "retry-after":
            try:
                return int(float(value) * 1000)
            except ValueError:
                return None
    return None
