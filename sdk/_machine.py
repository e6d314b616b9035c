"""The SDK side of the Restate service protocol (V5-V7) as a pure state machine: bytes in, commands and frames out.

One `Machine` serves one invocation attempt. The transport feeds it the request
body (`feed`, `notify_input_closed`); handler code calls its `sys_*` methods,
which journal commands (or, while replaying, check them against the journal)
and return notification handles; `do_await` says whether a tree of handles is
resolved, which run to execute, whether to wait for input or to suspend.
`take_output` returns the frames to write to the response body. Nothing here
does I/O, reads the clock or awaits: the asyncio driver (`_attempt.py`) does.

Phases: WAITING_START -> WAITING_REPLAY (collecting `known_entries` journal
entries) -> REPLAYING (handler re-issues recorded commands) -> PROCESSING (new
commands are written out) -> CLOSED (after End, Suspension or Error).
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from protocol import (
    CANCEL_SIGNAL_ID,
    DEFAULT_MAX_FRAME_BYTES,
    FIRST_AWAKEABLE_SIGNAL_ID,
    MAX_SERVICE_PROTOCOL_VERSION,
    MIN_SERVICE_PROTOCOL_VERSION,
    REQUESTED_ACK,
    Frame,
    FrameDecoder,
    MessageType,
    ProtocolError,
    decode_message,
    encode_message,
    is_command,
    is_notification,
    message_type_of,
    pb,
)
from protocol.error_codes import InvocationErrorCode
from protocol.ids import InvocationId, format_awakeable_id
from sdk._await_tree import Resolution, flatten_into, resolve, to_future
from sdk._eager_state import EagerState
from sdk._errors import (
    INTERNAL_CODE,
    JOURNAL_MISMATCH_CODE,
    PROTOCOL_VIOLATION_CODE,
    UNSUPPORTED_FEATURE_CODE,
    AttemptFailedError,
)
from sdk._journal import command_matches, decode_notification, describe, failure_to_pb
from sdk._outcomes import (
    AnyCompleted,
    AwaitOutcome,
    CallHandles,
    CancelReceived,
    ExecuteRun,
    InvocationInput,
    RunFailedTerminally,
    RunHandle,
    RunOutcome,
    RunSucceeded,
    Suspended,
    WaitExternal,
)
from sdk._results import (
    Await,
    AwaitHandle,
    CompletionId,
    Failure,
    InvocationIdResult,
    NotificationId,
    Result,
    SignalId,
    SignalName,
    StateKeys,
    Value,
    Void,
    first_completed,
    handles_of,
)
from sdk._retry import GiveUp, RetryAfter, next_retry

CLOSED_CODE = InvocationErrorCode.CLOSED
RecordedMessage = TypeVar("RecordedMessage", bound=Message)
CANCEL_HANDLE = 1
"""The handle of the built-in CANCEL signal; handles 1..16 are reserved, user handles start at 17."""
FIRST_USER_HANDLE = 17
V6 = 6
V7 = 7


class Phase(enum.Enum):
    """Where the attempt is in its lifecycle."""

    WAITING_START = "waiting for Start"
    WAITING_REPLAY = "waiting for the journal to replay"
    REPLAYING = "replaying"
    PROCESSING = "processing"
    CLOSED = "closed"


_CommandBuilder = Callable[[int], Message]
"""Builds a command given its result completion id."""


@dataclass
class _Run:
    command_index: int
    name: str
    executing: bool = False


@dataclass
class _TrackedCall:
    handle: int
    invocation_id: str | None = None


class Machine:
    """The protocol state of one invocation attempt; see the module docstring."""

    def __init__(
        self,
        protocol_version: int,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        cancel_child_calls: bool = True,
        cancel_child_sends: bool = False,
    ) -> None:
        if not MIN_SERVICE_PROTOCOL_VERSION <= protocol_version <= MAX_SERVICE_PROTOCOL_VERSION:
            raise ValueError(
                f"service protocol version {protocol_version} is not supported;"
                f" expected {MIN_SERVICE_PROTOCOL_VERSION}..{MAX_SERVICE_PROTOCOL_VERSION}"
            )
        self.protocol_version = protocol_version
        self.phase = Phase.WAITING_START
        self.failure: AttemptFailedError | None = None
        self.input_closed = False
        self._cancel_child_calls = cancel_child_calls
        self._cancel_child_sends = cancel_child_sends
        self._decoder = FrameDecoder(max_frame_bytes)
        self._output: list[bytes] = []
        self._start: pb.StartMessage | None = None
        self._received_entries = 0
        self._recorded: deque[Frame] = deque()
        self._pending: deque[tuple[NotificationId, Result]] = deque()
        self._ready: dict[NotificationId, Result] = {}
        self._handles: dict[int, NotificationId] = {CANCEL_HANDLE: SignalId(CANCEL_SIGNAL_ID)}
        self._next_handle = FIRST_USER_HANDLE
        self._next_completion_id = 1
        self._next_signal_id = FIRST_AWAKEABLE_SIGNAL_ID
        self._command_index = -1
        self._last_command: tuple[int, str] = (MessageType.INPUT_COMMAND, "")
        self._processing_first_entry = False
        self._eager_state = EagerState(partial=True, values={})
        self._runs: dict[int, _Run] = {}
        self._cached_run_results: dict[int, Result] = {}
        self._tracked_calls: list[_TrackedCall] = []
        self._last_awaiting_on: pb.Future | None = None

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Consumes request body bytes. Errors close the machine; they do not raise."""
        if self.phase is Phase.CLOSED:
            return
        try:
            frames = self._decoder.feed(data)
            for frame in frames:
                self._on_frame(frame)
                if self.phase is Phase.CLOSED:
                    return
        except ProtocolError as error:
            self._fail(PROTOCOL_VIOLATION_CODE, str(error))
        except AttemptFailedError:
            return

    def notify_input_closed(self) -> None:
        """The runtime closed the request body: no more notifications will arrive."""
        self.input_closed = True
        if self.phase in (Phase.WAITING_START, Phase.WAITING_REPLAY):
            self._fail(
                PROTOCOL_VIOLATION_CODE,
                "the request body ended before Start and all known_entries journal entries arrived",
            )

    def is_ready_to_execute(self) -> bool:
        """True once Start and all journal entries to replay have arrived."""
        return self.phase in (Phase.REPLAYING, Phase.PROCESSING)

    def take_output(self) -> bytes:
        """The frames produced since the last call, concatenated."""
        output = b"".join(self._output)
        self._output.clear()
        return output

    @property
    def is_replaying(self) -> bool:
        """True while the handler re-issues recorded commands."""
        return self.phase is Phase.REPLAYING

    def _on_frame(self, frame: Frame) -> None:
        if frame.type == MessageType.START:
            start = decode_message(frame)
            assert isinstance(start, pb.StartMessage), "decode_message decodes a START frame as StartMessage"
            self._on_start(start)
        elif is_command(frame.type):
            self._on_recorded_command(frame)
        elif is_notification(frame.type):
            self._on_notification(frame)
        elif frame.type == MessageType.PROPOSE_RUN_COMPLETION_ACK:
            ack = decode_message(frame)
            assert isinstance(ack, pb.ProposeRunCompletionAckMessage), "decode_message decodes this frame type as its ack message"
            self._on_run_ack(ack)
        else:
            raise self._fail(
                PROTOCOL_VIOLATION_CODE,
                f"unexpected message type {frame.type:#06x} from the runtime; expected Start, a journal entry or a notification",
            )

    def _on_start(self, start: pb.StartMessage) -> None:
        if self.phase is not Phase.WAITING_START:
            raise self._fail(PROTOCOL_VIOLATION_CODE, f"got a second Start message while {self.phase.value}")
        if start.known_entries == 0:
            raise self._fail(INTERNAL_CODE, "Start.known_entries is 0; expected >= 1 (the Input command)")
        self._start = start
        values = {entry.key.decode("utf-8"): bytes(entry.value) for entry in start.state_map}
        self._eager_state = EagerState(partial=start.partial_state, values=values)
        self.phase = Phase.WAITING_REPLAY

    def _on_recorded_command(self, frame: Frame) -> None:
        if self.phase is not Phase.WAITING_REPLAY:
            raise self._fail(
                PROTOCOL_VIOLATION_CODE,
                f"got command {frame.type:#06x} while {self.phase.value}; commands are only replayed after Start",
            )
        self._recorded.append(frame)
        self._count_replay_entry()

    def _on_notification(self, frame: Frame) -> None:
        if self.phase is Phase.WAITING_START:
            raise self._fail(PROTOCOL_VIOLATION_CODE, f"got notification {frame.type:#06x} before Start")
        self._pending.append(decode_notification(frame))
        if self.phase is Phase.WAITING_REPLAY:
            self._count_replay_entry()

    def _on_run_ack(self, ack: pb.ProposeRunCompletionAckMessage) -> None:
        result = self._cached_run_results.pop(ack.completion_id, None)
        if self.phase is not Phase.PROCESSING or result is None:
            raise self._fail(
                PROTOCOL_VIOLATION_CODE,
                f"got ProposeRunCompletionAck for completion {ack.completion_id},"
                " but no run proposal with that id is waiting for an ack in this attempt",
            )
        self._pending.append((CompletionId(ack.completion_id), result))

    def _count_replay_entry(self) -> None:
        assert self._start is not None, "journal entries are only counted after Start"
        self._received_entries += 1
        if self._received_entries == self._start.known_entries:
            self.phase = Phase.REPLAYING

    # ------------------------------------------------------------- commands

    def sys_input(self) -> InvocationInput:
        """Pops the Input command; the handler's first call."""
        self._check_open()
        if self.phase is not Phase.REPLAYING or self._command_index != -1:
            raise self._fail(PROTOCOL_VIOLATION_CODE, f"the input can be read once, right after Start; now {self.phase.value}")
        recorded = self._pop_recorded(pb.InputCommandMessage())
        start = self._start
        assert start is not None, "REPLAYING implies Start arrived"
        return InvocationInput(
            invocation_id=start.debug_id,
            invocation_id_bytes=bytes(start.id),
            key=start.key,
            headers=tuple((header.key, header.value) for header in recorded.headers),
            body=bytes(recorded.value.content),
            random_seed=self._random_seed(start),
            scope=start.scope if self.protocol_version >= V7 and start.HasField("scope") else None,
            limit_key=start.limit_key if self.protocol_version >= V7 and start.HasField("limit_key") else None,
            idempotency_key=(start.idempotency_key if self.protocol_version >= V7 and start.HasField("idempotency_key") else None),
        )

    def sys_get_state(self, key: str, name: str = "") -> int:
        """GetEagerState when the value is known locally, else GetLazyState; returns a handle."""
        self._check_open()
        completion_id = self._allocate_completion_id()
        if self.phase is Phase.REPLAYING:
            return self._replay_get_state(key, name, completion_id)
        known = self._eager_state.get(key) if self.phase is Phase.PROCESSING else None
        if known is None:
            self._issue(pb.GetLazyStateCommandMessage(key=key.encode(), result_completion_id=completion_id, name=name))
            return self._new_handle(CompletionId(completion_id))
        command = pb.GetEagerStateCommandMessage(key=key.encode(), name=name)
        _set_void_or_value(command, known)
        self._issue(command)
        return self._ready_handle(CompletionId(completion_id), known)

    def sys_get_state_keys(self, name: str = "") -> int:
        """GetEagerStateKeys when the state is complete locally, else GetLazyStateKeys."""
        self._check_open()
        completion_id = self._allocate_completion_id()
        if self.phase is Phase.REPLAYING:
            return self._replay_get_state_keys(name, completion_id)
        keys = self._eager_state.keys() if self.phase is Phase.PROCESSING else None
        if keys is None:
            self._issue(pb.GetLazyStateKeysCommandMessage(result_completion_id=completion_id, name=name))
            return self._new_handle(CompletionId(completion_id))
        command = pb.GetEagerStateKeysCommandMessage(value=pb.StateKeys(keys=[k.encode() for k in keys]), name=name)
        self._issue(command)
        return self._ready_handle(CompletionId(completion_id), StateKeys(keys))

    def sys_set_state(self, key: str, value: bytes, name: str = "") -> None:
        """Journals SetState."""
        self._check_open()
        self._eager_state.set(key, value)
        self._issue(pb.SetStateCommandMessage(key=key.encode(), value=pb.Value(content=value), name=name))

    def sys_clear_state(self, key: str, name: str = "") -> None:
        """Journals ClearState."""
        self._check_open()
        self._eager_state.clear(key)
        self._issue(pb.ClearStateCommandMessage(key=key.encode(), name=name))

    def sys_clear_all_state(self, name: str = "") -> None:
        """Journals ClearAllState."""
        self._check_open()
        self._eager_state.clear_all()
        self._issue(pb.ClearAllStateCommandMessage(name=name))

    def sys_sleep(self, wake_up_time_ms: int, name: str = "") -> int:
        """Journals Sleep until `wake_up_time_ms` (ms since the UNIX epoch); returns its handle."""
        return self._completable(lambda cid: pb.SleepCommandMessage(wake_up_time=wake_up_time_ms, result_completion_id=cid, name=name))

    def sys_call(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        *,
        key: str = "",
        idempotency_key: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        scope: str | None = None,
        limit_key: str | None = None,
        name: str = "",
    ) -> CallHandles:
        """Journals Call; returns the handles of its invocation id and of its result."""
        self._check_open()
        self._check_v7_target(scope, limit_key)
        invocation_id_cid = self._allocate_completion_id()
        result_cid = self._allocate_completion_id()
        command = pb.CallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            key=key,
            invocation_id_notification_idx=invocation_id_cid,
            result_completion_id=result_cid,
            name=name,
        )
        _fill_target_options(command, headers, idempotency_key, scope, limit_key)
        self._issue(command)
        handles = CallHandles(
            invocation_id_handle=self._new_handle(CompletionId(invocation_id_cid)),
            result_handle=self._new_handle(CompletionId(result_cid)),
        )
        if self._cancel_child_calls:
            self._tracked_calls.append(_TrackedCall(handles.invocation_id_handle))
        return handles

    def sys_send(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        *,
        key: str = "",
        invoke_time_ms: int = 0,
        idempotency_key: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        scope: str | None = None,
        limit_key: str | None = None,
        name: str = "",
    ) -> int:
        """Journals OneWayCall (at `invoke_time_ms`, 0 = now); returns the handle of its invocation id."""
        self._check_open()
        self._check_v7_target(scope, limit_key)
        invocation_id_cid = self._allocate_completion_id()
        command = pb.OneWayCallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            key=key,
            invoke_time=invoke_time_ms,
            invocation_id_notification_idx=invocation_id_cid,
            name=name,
        )
        _fill_target_options(command, headers, idempotency_key, scope, limit_key)
        self._issue(command)
        handle = self._new_handle(CompletionId(invocation_id_cid))
        if self._cancel_child_sends:
            self._tracked_calls.append(_TrackedCall(handle))
        return handle

    def sys_awakeable(self) -> tuple[str, int]:
        """A new awakeable: its public id and the handle of its signal."""
        self._check_open()
        self._check_executing("awakeable")
        signal_id = self._next_signal_id
        self._next_signal_id += 1
        start = self._start
        assert start is not None, "executing implies Start arrived"
        try:
            invocation_id = InvocationId.from_bytes(bytes(start.id))
        except ValueError as error:
            raise self._fail(PROTOCOL_VIOLATION_CODE, f"Start.id cannot name an awakeable: {error}") from None
        return format_awakeable_id(invocation_id, signal_id), self._new_handle(SignalId(signal_id))

    def sys_complete_awakeable(self, awakeable: str, result: Value | Failure, name: str = "") -> None:
        """Journals CompleteAwakeable."""
        self._check_open()
        command = pb.CompleteAwakeableCommandMessage(awakeable_id=awakeable, name=name)
        _set_value_or_failure(command, result, "value", "failure")
        self._issue(command)

    def sys_signal(self, signal_name: str) -> int:
        """The handle of the named signal `signal_name` of this invocation."""
        self._check_open()
        self._check_executing("named signal")
        return self._new_handle(SignalName(signal_name))

    def sys_complete_signal(self, target_invocation_id: str, signal_name: str, result: Value | Failure) -> None:
        """Journals SendSignal completing a named signal of another invocation."""
        self._check_open()
        command = pb.SendSignalCommandMessage(target_invocation_id=target_invocation_id, name=signal_name)
        _set_value_or_failure(command, result, "value", "failure")
        self._issue(command)

    def sys_cancel_invocation(self, target_invocation_id: str) -> None:
        """Journals SendSignal(CANCEL) to another invocation."""
        self._check_open()
        command = pb.SendSignalCommandMessage(target_invocation_id=target_invocation_id, idx=CANCEL_SIGNAL_ID)
        command.void.SetInParent()
        self._issue(command)

    def sys_get_promise(self, key: str, name: str = "") -> int:
        """Journals GetPromise; completes once the promise is resolved or rejected."""
        return self._completable(lambda cid: pb.GetPromiseCommandMessage(key=key, result_completion_id=cid, name=name))

    def sys_peek_promise(self, key: str, name: str = "") -> int:
        """Journals PeekPromise; completes at once with the value, a failure or void."""
        return self._completable(lambda cid: pb.PeekPromiseCommandMessage(key=key, result_completion_id=cid, name=name))

    def sys_complete_promise(self, key: str, result: Value | Failure, name: str = "") -> int:
        """Journals CompletePromise; its notification fails with 409 if already completed."""

        def command(cid: int) -> Message:
            message = pb.CompletePromiseCommandMessage(key=key, result_completion_id=cid, name=name)
            _set_value_or_failure(message, result, "completion_value", "completion_failure")
            return message

        return self._completable(command)

    def sys_attach_invocation(self, invocation_id: str, name: str = "") -> int:
        """Journals AttachInvocation; completes with the target's result."""
        return self._completable(
            lambda cid: pb.AttachInvocationCommandMessage(invocation_id=invocation_id, result_completion_id=cid, name=name)
        )

    def sys_get_invocation_output(self, invocation_id: str, name: str = "") -> int:
        """Journals GetInvocationOutput; completes at once (void if the target is not done)."""
        return self._completable(
            lambda cid: pb.GetInvocationOutputCommandMessage(invocation_id=invocation_id, result_completion_id=cid, name=name)
        )

    def sys_run(self, name: str = "") -> RunHandle:
        """Journals Run; the action must execute unless its result is already journaled."""
        handle = self._completable(lambda cid: pb.RunCommandMessage(result_completion_id=cid, name=name))
        notification_id = self._handles[handle]
        if notification_id in self._ready or any(pending_id == notification_id for pending_id, _ in self._pending):
            return RunHandle(handle, replayed=True)
        self._runs[handle] = _Run(command_index=self._command_index, name=name)
        return RunHandle(handle, replayed=False)

    def propose_run_completion(self, handle: int, outcome: RunOutcome) -> None:
        """Proposes the result of an executed run. Never raises: failures close the machine."""
        run = self._runs.pop(handle, None)
        if self.phase is not Phase.PROCESSING or run is None:
            return
        notification_id = self._handles[handle]
        assert isinstance(notification_id, CompletionId), "a run's handle maps to a completion id"
        result = self._run_result(run, outcome)
        if result is None:
            return
        message = pb.ProposeRunCompletionMessage(result_completion_id=notification_id.value)
        if isinstance(result, Value):
            message.value = result.content
        else:
            message.failure.CopyFrom(failure_to_pb(result))
        flags = 0
        if self.protocol_version >= V7:
            self._cached_run_results[notification_id.value] = result
            flags = REQUESTED_ACK
        self._output.append(encode_message(message, flags))

    def sys_write_output(self, result: Value | Failure) -> None:
        """Journals the Output command (the handler's result or terminal failure)."""
        self._check_open()
        command = pb.OutputCommandMessage()
        _set_value_or_failure(command, result, "value", "failure")
        self._issue(command)

    def sys_end(self) -> None:
        """Writes End and closes; a no-op if already closed."""
        if self.phase is Phase.CLOSED:
            return
        if self.phase is not Phase.PROCESSING:
            raise self._fail(
                JOURNAL_MISMATCH_CODE,
                f"the handler finished while {self.phase.value}, with {len(self._recorded)} recorded commands"
                " not replayed; the handler code is not deterministic",
            )
        self._emit(pb.EndMessage())
        self.phase = Phase.CLOSED

    def notify_error(
        self,
        message: str,
        stacktrace: str = "",
        *,
        code: int = INTERNAL_CODE,
        next_retry_delay_ms: int | None = None,
    ) -> None:
        """Reports a retryable failure of the handler (ErrorMessage, no related command) and closes; a no-op if closed."""
        self._fail(code, message, stacktrace=stacktrace, next_retry_delay_ms=next_retry_delay_ms, name_command=False)

    # ---------------------------------------------------------------- awaits

    def do_await(self, tree: Await) -> AwaitOutcome:
        """Progress on `tree` (the CANCEL signal is always awaited too); raises if the attempt failed."""
        self._check_open()
        if self.phase not in (Phase.REPLAYING, Phase.PROCESSING):
            raise self._fail(PROTOCOL_VIOLATION_CODE, f"cannot await while {self.phase.value}")
        outcome = self._progress(first_completed(tree, AwaitHandle(CANCEL_HANDLE)))
        if not isinstance(outcome, AnyCompleted) or SignalId(CANCEL_SIGNAL_ID) not in self._ready:
            return outcome
        return self._propagate_cancel()

    def is_completed(self, handle: int) -> bool:
        """True if the notification of `handle` is available (or was already taken)."""
        notification_id = self._handles.get(handle)
        return notification_id is None or notification_id in self._ready

    def take_notification(self, handle: int) -> Result | None:
        """Removes and returns the result of `handle`, or None if not available."""
        notification_id = self._handles.get(handle)
        if notification_id is None or notification_id not in self._ready:
            return None
        result = self._ready.pop(notification_id)
        if handle != CANCEL_HANDLE:
            del self._handles[handle]
        self._remember_invocation_id(handle, result)
        return result

    def _progress(self, tree: Await) -> AwaitOutcome:
        while True:
            if self._resolve(tree) is not Resolution.PENDING:
                return AnyCompleted()
            if not self._pending:
                break
            notification_id, result = self._pending.popleft()
            self._ready[notification_id] = result
        if self.phase is Phase.REPLAYING:
            raise self._fail(
                JOURNAL_MISMATCH_CODE,
                "the handler awaits a result that the journal does not have, while replaying recorded commands;"
                " the handler code is not deterministic",
            )
        handles = handles_of(tree)
        for handle in handles:
            run = self._runs.get(handle)
            if run is not None and not run.executing:
                run.executing = True
                return ExecuteRun(handle)
        waiting_run = any(self._runs[h].executing for h in handles if h in self._runs)
        if self.input_closed:
            if waiting_run:
                return WaitExternal(waiting_input=False, waiting_run=True)
            self._suspend(tree)
            return Suspended()
        self._send_awaiting_on(tree)
        return WaitExternal(waiting_input=True, waiting_run=waiting_run)

    def _propagate_cancel(self) -> AwaitOutcome:
        for tracked in self._tracked_calls:
            if tracked.invocation_id is not None:
                continue
            outcome = self._progress(AwaitHandle(tracked.handle))
            if not isinstance(outcome, AnyCompleted):
                return outcome
            result = self._ready[self._handles[tracked.handle]]
            assert isinstance(result, InvocationIdResult), "a call's id handle carries an invocation id"
            tracked.invocation_id = result.invocation_id
        tracked_calls, self._tracked_calls = self._tracked_calls, []
        for tracked in tracked_calls:
            assert tracked.invocation_id is not None, "every tracked call was resolved above"
            self.sys_cancel_invocation(tracked.invocation_id)
        self._ready.pop(SignalId(CANCEL_SIGNAL_ID), None)
        return CancelReceived()

    def _resolve(self, tree: Await) -> Resolution:
        return resolve(tree, self._handles, self._ready)

    def _to_future(self, tree: Await) -> pb.Future:
        return to_future(tree, self._handles, self._ready)

    def _suspend(self, tree: Await) -> None:
        future = self._to_future(tree)
        if self.protocol_version >= V7:
            message = pb.SuspensionMessage(awaiting_on=future)
        else:
            message = pb.SuspensionMessage()
            flatten_into(future, message)
        self._emit(message)
        self.phase = Phase.CLOSED

    def _send_awaiting_on(self, tree: Await) -> None:
        if self.protocol_version < V7 or any(run.executing for run in self._runs.values()):
            return
        future = self._to_future(tree)
        if future == self._last_awaiting_on:
            return
        self._last_awaiting_on = future
        self._emit(pb.AwaitingOnMessage(awaiting_on=future))

    # --------------------------------------------------------------- helpers

    def _completable(self, build: _CommandBuilder) -> int:
        self._check_open()
        completion_id = self._allocate_completion_id()
        self._issue(build(completion_id))
        return self._new_handle(CompletionId(completion_id))

    def _issue(self, command: Message) -> Message:
        """Writes `command` (processing) or checks it against the journal (replaying)."""
        if self.phase is Phase.PROCESSING:
            self._command_index += 1
            self._last_command = (message_type_of(command), _command_name(command))
            self._processing_first_entry = False
            self._emit(command)
            return command
        if self.phase is Phase.REPLAYING:
            recorded = self._pop_recorded(command)
            if not command_matches(recorded, command):
                raise self._journal_mismatch(describe(recorded), describe(command))
            return recorded
        raise self._fail(PROTOCOL_VIOLATION_CODE, f"cannot journal {type(command).__name__} while {self.phase.value}")

    def _pop_recorded(self, issued: RecordedMessage) -> RecordedMessage:
        self._command_index += 1
        issued_type = message_type_of(issued)
        self._last_command = (issued_type, _command_name(issued))
        if not self._recorded:
            raise self._fail(PROTOCOL_VIOLATION_CODE, f"no recorded command left to replay {type(issued).__name__}")
        frame = self._recorded.popleft()
        if not self._recorded:
            self.phase = Phase.PROCESSING
            self._processing_first_entry = True
        if frame.type != issued_type:
            raise self._journal_mismatch(_type_name(frame.type), type(issued).__name__)
        recorded = decode_message(frame)
        assert isinstance(recorded, type(issued)), "a frame of the issued command's type decodes to the issued command's class"
        return recorded

    def _replay_get_state(self, key: str, name: str, completion_id: int) -> int:
        issued = pb.GetLazyStateCommandMessage(key=key.encode(), result_completion_id=completion_id, name=name)
        if self._recorded and self._recorded[0].type == MessageType.GET_EAGER_STATE_COMMAND:
            recorded = self._pop_recorded(pb.GetEagerStateCommandMessage())
            if recorded.key != issued.key or recorded.name != name:
                raise self._journal_mismatch(describe(recorded), f"GetState{{key: {key!r}, name: {name!r}}}")
            which = recorded.WhichOneof("result")
            result: Result = Value(bytes(recorded.value.content)) if which == "value" else Void()
            return self._ready_handle(CompletionId(completion_id), result)
        self._issue(issued)
        return self._new_handle(CompletionId(completion_id))

    def _replay_get_state_keys(self, name: str, completion_id: int) -> int:
        issued = pb.GetLazyStateKeysCommandMessage(result_completion_id=completion_id, name=name)
        if self._recorded and self._recorded[0].type == MessageType.GET_EAGER_STATE_KEYS_COMMAND:
            recorded = self._pop_recorded(pb.GetEagerStateKeysCommandMessage())
            if recorded.name != name:
                raise self._journal_mismatch(describe(recorded), f"GetStateKeys{{name: {name!r}}}")
            keys = tuple(k.decode("utf-8") for k in recorded.value.keys)
            return self._ready_handle(CompletionId(completion_id), StateKeys(keys))
        self._issue(issued)
        return self._new_handle(CompletionId(completion_id))

    def _run_result(self, run: _Run, outcome: RunOutcome) -> Value | Failure | None:
        if isinstance(outcome, RunSucceeded):
            return Value(outcome.value)
        if isinstance(outcome, RunFailedTerminally):
            return outcome.failure
        retry_count, retry_loop_ms = self._retry_info_before_this_failure()
        decision = next_retry(outcome.policy, retry_count + 1, retry_loop_ms + outcome.attempt_duration_ms)
        if isinstance(decision, GiveUp):
            return Failure(code=outcome.code, message=outcome.message)
        assert isinstance(decision, RetryAfter), "a retry decision is GiveUp or RetryAfter"
        self._last_command = (MessageType.RUN_COMMAND, run.name)
        self._fail(
            outcome.code,
            outcome.message,
            stacktrace=outcome.stacktrace,
            related_index=run.command_index,
            next_retry_delay_ms=decision.delay_ms,
        )
        return None

    def _retry_info_before_this_failure(self) -> tuple[int, int]:
        """Retries so far of the first new entry of this attempt, per Start; zero otherwise."""
        start = self._start
        if not self._processing_first_entry or start is None:
            return 0, 0
        retry_count = start.retry_count_since_last_stored_entry
        loop_ms = start.duration_since_last_stored_entry if retry_count > 0 else 0
        return retry_count, loop_ms

    def _remember_invocation_id(self, handle: int, result: Result) -> None:
        if not isinstance(result, InvocationIdResult):
            return
        for tracked in self._tracked_calls:
            if tracked.handle == handle:
                tracked.invocation_id = result.invocation_id

    def _check_v7_target(self, scope: str | None, limit_key: str | None) -> None:
        if (scope is not None or limit_key is not None) and self.protocol_version < V7:
            raise self._fail(
                UNSUPPORTED_FEATURE_CODE,
                f"scope/limit_key need service protocol V7, but this invocation negotiated V{self.protocol_version}",
            )

    def _check_executing(self, what: str) -> None:
        if self.phase not in (Phase.REPLAYING, Phase.PROCESSING):
            raise self._fail(PROTOCOL_VIOLATION_CODE, f"cannot create an {what} while {self.phase.value}")

    def _check_open(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self.phase is Phase.CLOSED:
            raise AttemptFailedError(CLOSED_CODE, "the attempt already ended (End or Suspension was written)")

    def _allocate_completion_id(self) -> int:
        completion_id = self._next_completion_id
        self._next_completion_id += 1
        return completion_id

    def _new_handle(self, notification_id: NotificationId) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = notification_id
        return handle

    def _ready_handle(self, notification_id: NotificationId, result: Result) -> int:
        self._ready[notification_id] = result
        return self._new_handle(notification_id)

    def _random_seed(self, start: pb.StartMessage) -> int:
        if self.protocol_version >= V6:
            return start.random_seed
        return int.from_bytes(hashlib.sha256(bytes(start.id)).digest()[:8], "big")

    def _emit(self, message: Message) -> None:
        self._output.append(encode_message(message))

    def _journal_mismatch(self, recorded: str, issued: str) -> AttemptFailedError:
        return self._fail(
            JOURNAL_MISMATCH_CODE,
            f"journal mismatch at command index {self._command_index}: the journal recorded {recorded},"
            f" but the handler now issued {issued}; the handler code is not deterministic"
            " or changed since the invocation started",
        )

    def _fail(
        self,
        code: int,
        message: str,
        *,
        stacktrace: str = "",
        related_index: int | None = None,
        next_retry_delay_ms: int | None = None,
        name_command: bool = True,
    ) -> AttemptFailedError:
        """Writes ErrorMessage and closes (unless already closed); returns the error to raise.

        With `name_command` the message names the command being processed (its
        index, type and name) as the cause.
        """
        error = AttemptFailedError(code, message)
        if self.phase is Phase.CLOSED:
            return self.failure or error
        error_message = pb.ErrorMessage(code=code, message=message, stacktrace=stacktrace)
        if name_command and (self._command_index >= 0 or related_index is not None):
            command_type, command_name = self._last_command
            error_message.related_command_index = self._command_index if related_index is None else related_index
            error_message.related_command_type = command_type
            if command_name:
                error_message.related_command_name = command_name
        if next_retry_delay_ms is not None:
            error_message.next_retry_delay = next_retry_delay_ms
        self._emit(error_message)
        self.phase = Phase.CLOSED
        self.failure = error
        return error


def _set_void_or_value(command: pb.GetEagerStateCommandMessage, result: Result) -> None:
    if isinstance(result, Value):
        command.value.content = result.content
    else:
        command.void.SetInParent()


def _set_value_or_failure(command: Message, result: Value | Failure, value_field: str, failure_field: str) -> None:
    if isinstance(result, Value):
        getattr(command, value_field).content = result.content
    else:
        getattr(command, failure_field).CopyFrom(failure_to_pb(result))


def _fill_target_options(
    command: pb.CallCommandMessage | pb.OneWayCallCommandMessage,
    headers: tuple[tuple[str, str], ...],
    idempotency_key: str | None,
    scope: str | None,
    limit_key: str | None,
) -> None:
    for header_key, header_value in headers:
        command.headers.add(key=header_key, value=header_value)
    if idempotency_key is not None:
        command.idempotency_key = idempotency_key
    if scope is not None:
        command.scope = scope
    if limit_key is not None:
        command.limit_key = limit_key


def _command_name(command: Message) -> str:
    if isinstance(command, pb.SendSignalCommandMessage):
        return command.entry_name
    return str(getattr(command, "name", ""))


def _type_name(message_type: int) -> str:
    try:
        return MessageType(message_type).name
    except ValueError:
        return f"{message_type:#06x}"
