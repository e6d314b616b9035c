"""Tests duro's SDK protocol machine with hand-built frame sequences: replay, determinism, suspension, notifications, runs, cancellation, state, V5-V7 differences."""

from __future__ import annotations

import hashlib

import pytest
from google.protobuf.message import Message

from protocol import REQUESTED_ACK, FrameDecoder, MessageType, decode_message, encode_message, pb
from protocol.ids import InvocationId, parse_awakeable_id
from sdk._errors import AttemptFailedError
from sdk._machine import Machine, Phase
from sdk._outcomes import (
    AnyCompleted,
    CancelReceived,
    ExecuteRun,
    RunFailedRetryably,
    RunFailedTerminally,
    RunSucceeded,
    Suspended,
    WaitExternal,
)
from sdk._results import AwaitHandle, Failure, InvocationIdResult, StateKeys, Value, Void, all_completed
from sdk._retry import RunRetryPolicy

INVOCATION_ID = InvocationId(partition_key=42, uuid=bytes(range(16)))


def start(known_entries: int = 1, **fields: object) -> pb.StartMessage:
    return pb.StartMessage(id=INVOCATION_ID.to_bytes(), debug_id=str(INVOCATION_ID), known_entries=known_entries, **fields)


def input_command(body: bytes = b'"in"') -> pb.InputCommandMessage:
    return pb.InputCommandMessage(value=pb.Value(content=body), headers=[pb.Header(key="h", value="v")])


def machine_with(*messages: Message, version: int = 6, close_input: bool = False) -> Machine:
    machine = Machine(version)
    machine.feed(b"".join(encode_message(message) for message in messages))
    if close_input:
        machine.notify_input_closed()
    return machine


def executing(*journal: Message, version: int = 6, close_input: bool = False, **start_fields: object) -> Machine:
    """A machine past sys_input, with `journal` (after the Input command) recorded."""
    machine = machine_with(
        start(known_entries=1 + len(journal), **start_fields), input_command(), *journal, version=version, close_input=close_input
    )
    machine.sys_input()
    return machine


def output_messages(machine: Machine) -> list[Message]:
    return [decode_message(frame) for frame in FrameDecoder().feed(machine.take_output())]


def output_frames(machine: Machine) -> list[tuple[int, int]]:
    return [(frame.type, frame.flags) for frame in FrameDecoder().feed(machine.take_output())]


# --- start and replay ----------------------------------------------------------------------------


def test_input_exposes_start_and_input_command() -> None:
    machine = machine_with(start(key="alice", random_seed=7), input_command(b'{"a":1}'))

    assert machine.is_ready_to_execute()
    invocation = machine.sys_input()

    assert invocation.invocation_id == str(INVOCATION_ID)
    assert invocation.key == "alice"
    assert invocation.body == b'{"a":1}'
    assert invocation.headers == (("h", "v"),)
    assert invocation.random_seed == 7
    assert machine.phase is Phase.PROCESSING


def test_v5_derives_random_seed_from_the_invocation_id() -> None:
    machine = machine_with(start(random_seed=7), input_command(), version=5)

    seed = machine.sys_input().random_seed

    assert seed == int.from_bytes(hashlib.sha256(INVOCATION_ID.to_bytes()).digest()[:8], "big")


def test_v7_reads_idempotency_key_scope_and_limit_key_but_v6_ignores_them() -> None:
    fields = {"idempotency_key": "ik", "scope": "s", "limit_key": "lk"}
    v7 = machine_with(start(**fields), input_command(), version=7).sys_input()
    v6 = machine_with(start(**fields), input_command(), version=6).sys_input()

    assert (v7.idempotency_key, v7.scope, v7.limit_key) == ("ik", "s", "lk")
    assert (v6.idempotency_key, v6.scope, v6.limit_key) == (None, None, None)


def test_not_ready_until_all_known_entries_arrived() -> None:
    machine = machine_with(start(known_entries=3), input_command())

    assert not machine.is_ready_to_execute()
    machine.feed(encode_message(pb.SetStateCommandMessage(key=b"k", value=pb.Value(content=b"1"))))
    assert not machine.is_ready_to_execute()
    machine.feed(encode_message(pb.ClearAllStateCommandMessage()))
    assert machine.is_ready_to_execute()


def test_input_closed_before_the_journal_arrived_is_a_protocol_violation() -> None:
    machine = machine_with(start(known_entries=2), input_command(), close_input=True)

    [error] = output_messages(machine)

    assert isinstance(error, pb.ErrorMessage) and error.code == 571
    assert machine.phase is Phase.CLOSED


def test_known_entries_zero_is_rejected() -> None:
    machine = machine_with(start(known_entries=0))

    [error] = output_messages(machine)

    assert isinstance(error, pb.ErrorMessage) and "known_entries" in error.message


def test_replayed_commands_are_not_written_again() -> None:
    machine = executing(
        pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"1")),
        pb.SleepCommandMessage(wake_up_time=1_000, result_completion_id=1, name="nap"),
        pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void()),
    )

    machine.sys_set_state("count", b"1")
    assert machine.is_replaying
    handle = machine.sys_sleep(wake_up_time_ms=99_999, name="nap")

    assert machine.phase is Phase.PROCESSING
    assert machine.do_await(AwaitHandle(handle)) == AnyCompleted()
    assert machine.take_notification(handle) == Void()
    assert machine.take_output() == b""


def test_one_way_call_replay_ignores_invoke_time() -> None:
    recorded = pb.OneWayCallCommandMessage(
        service_name="S", handler_name="h", parameter=b"1", invoke_time=5, invocation_id_notification_idx=1
    )
    machine = executing(recorded)

    machine.sys_send("S", "h", b"1", invoke_time_ms=12345)

    assert machine.failure is None and machine.take_output() == b""


def test_changed_command_parameters_are_a_journal_mismatch() -> None:
    machine = executing(pb.SetStateCommandMessage(key=b"a", value=pb.Value(content=b"1")))

    with pytest.raises(AttemptFailedError) as raised:
        machine.sys_set_state("b", b"1")

    [error] = output_messages(machine)
    assert raised.value.code == 570
    assert isinstance(error, pb.ErrorMessage) and error.code == 570
    assert error.related_command_index == 1
    assert error.related_command_type == MessageType.SET_STATE_COMMAND
    assert machine.phase is Phase.CLOSED


def test_changed_command_type_is_a_journal_mismatch() -> None:
    machine = executing(pb.ClearAllStateCommandMessage())

    with pytest.raises(AttemptFailedError) as raised:
        machine.sys_sleep(1_000)

    assert raised.value.code == 570
    assert "CLEAR_ALL_STATE_COMMAND" in raised.value.message


def test_awaiting_a_result_the_journal_lacks_while_replaying_is_a_mismatch() -> None:
    machine = executing(
        pb.SleepCommandMessage(wake_up_time=1, result_completion_id=1),
        pb.ClearAllStateCommandMessage(),
    )
    handle = machine.sys_sleep(1)

    with pytest.raises(AttemptFailedError) as raised:
        machine.do_await(AwaitHandle(handle))

    assert raised.value.code == 570


def test_finishing_before_replaying_every_command_is_a_mismatch() -> None:
    machine = executing(pb.ClearAllStateCommandMessage())

    with pytest.raises(AttemptFailedError):
        machine.sys_end()


def test_calls_after_the_attempt_ended_raise_without_writing() -> None:
    machine = executing()
    machine.sys_write_output(Value(b"1"))
    machine.sys_end()
    machine.take_output()

    with pytest.raises(AttemptFailedError) as raised:
        machine.sys_set_state("a", b"1")

    assert raised.value.code == 598
    assert machine.take_output() == b""


# --- ids --------------------------------------------------------------------------------------


def test_completion_ids_start_at_one_and_signals_at_seventeen() -> None:
    machine = executing()

    machine.sys_sleep(1_000)
    machine.sys_call("S", "h", b"")
    first_awakeable, _ = machine.sys_awakeable()
    second_awakeable, _ = machine.sys_awakeable()

    sleep, call = output_messages(machine)
    assert isinstance(sleep, pb.SleepCommandMessage) and sleep.result_completion_id == 1
    assert isinstance(call, pb.CallCommandMessage)
    assert (call.invocation_id_notification_idx, call.result_completion_id) == (2, 3)
    assert parse_awakeable_id(first_awakeable) == (INVOCATION_ID, 17)
    assert parse_awakeable_id(second_awakeable) == (INVOCATION_ID, 18)
    assert first_awakeable.startswith("sign_1")


def test_awakeable_resolves_from_a_signal_notification() -> None:
    machine = executing()
    _, handle = machine.sys_awakeable()

    assert isinstance(machine.do_await(AwaitHandle(handle)), WaitExternal)
    machine.feed(encode_message(pb.SignalNotificationMessage(idx=17, value=pb.Value(content=b'"ok"'))))

    assert machine.do_await(AwaitHandle(handle)) == AnyCompleted()
    assert machine.take_notification(handle) == Value(b'"ok"')


# --- suspension and bidirectional input ----------------------------------------------------------


def test_request_response_suspends_on_an_unavailable_result_v6_flat_lists() -> None:
    machine = executing(close_input=True)
    handle = machine.sys_sleep(1_000)

    assert machine.do_await(AwaitHandle(handle)) == Suspended()

    sleep, suspension = output_messages(machine)
    assert isinstance(sleep, pb.SleepCommandMessage)
    assert isinstance(suspension, pb.SuspensionMessage)
    assert list(suspension.waiting_completions) == [1]
    assert list(suspension.waiting_signals) == [1]
    assert not suspension.HasField("awaiting_on")
    assert machine.phase is Phase.CLOSED


def test_v7_suspension_carries_a_future_tree() -> None:
    machine = executing(version=7, close_input=True)
    first = machine.sys_sleep(1_000)
    second = machine.sys_sleep(2_000)

    assert machine.do_await(all_completed(AwaitHandle(first), AwaitHandle(second))) == Suspended()

    suspension = output_messages(machine)[-1]
    assert isinstance(suspension, pb.SuspensionMessage)
    assert list(suspension.waiting_completions) == []
    future = suspension.awaiting_on
    assert future.combinator_type == pb.FIRST_COMPLETED
    assert list(future.waiting_signals) == [1]
    [nested] = future.nested_futures
    assert nested.combinator_type == pb.ALL_COMPLETED
    assert list(nested.waiting_completions) == [1, 2]


def test_bidi_waits_for_input_then_resolves_when_notifications_arrive() -> None:
    machine = executing()
    handles = machine.sys_call("Greeter", "greet", b'"bob"', key="k", idempotency_key="ik", headers=(("a", "b"),))

    assert machine.do_await(AwaitHandle(handles.result_handle)) == WaitExternal(waiting_input=True, waiting_run=False)
    machine.feed(
        encode_message(pb.CallInvocationIdCompletionNotificationMessage(completion_id=1, invocation_id="inv_child"))
        + encode_message(pb.CallCompletionNotificationMessage(completion_id=2, value=pb.Value(content=b'"hi"')))
    )

    assert machine.do_await(AwaitHandle(handles.result_handle)) == AnyCompleted()
    assert machine.take_notification(handles.result_handle) == Value(b'"hi"')
    assert machine.take_notification(handles.invocation_id_handle) == InvocationIdResult("inv_child")
    [call] = output_messages(machine)
    assert isinstance(call, pb.CallCommandMessage)
    assert (call.key, call.idempotency_key, [(h.key, h.value) for h in call.headers]) == ("k", "ik", [("a", "b")])


def test_v7_sends_awaiting_on_once_while_waiting_for_input() -> None:
    machine = executing(version=7)
    handle = machine.sys_sleep(1_000)
    machine.take_output()

    machine.do_await(AwaitHandle(handle))
    machine.do_await(AwaitHandle(handle))

    [awaiting_on] = output_messages(machine)
    assert isinstance(awaiting_on, pb.AwaitingOnMessage)
    assert list(awaiting_on.awaiting_on.waiting_completions) == [1]


def test_failure_notification_resolves_as_failed() -> None:
    machine = executing(
        pb.GetPromiseCommandMessage(key="p", result_completion_id=1),
        pb.GetPromiseCompletionNotificationMessage(completion_id=1, failure=pb.Failure(code=409, message="no")),
    )
    handle = machine.sys_get_promise("p")

    assert machine.do_await(AwaitHandle(handle)) == AnyCompleted()
    assert machine.take_notification(handle) == Failure(code=409, message="no")


def test_notifications_are_consumed_in_arrival_order() -> None:
    machine = executing()
    first = machine.sys_sleep(1)
    second = machine.sys_sleep(2)
    machine.feed(
        encode_message(pb.SleepCompletionNotificationMessage(completion_id=2, void=pb.Void()))
        + encode_message(pb.SleepCompletionNotificationMessage(completion_id=1, void=pb.Void()))
    )

    machine.do_await(AwaitHandle(second))

    assert machine.is_completed(second)
    assert not machine.is_completed(first)


# --- runs ------------------------------------------------------------------------------------


def test_v6_run_executes_when_awaited_and_completes_from_the_notification() -> None:
    machine = executing()
    run = machine.sys_run("pay")
    tree = AwaitHandle(run.handle)

    assert not run.replayed
    assert machine.do_await(tree) == ExecuteRun(run.handle)
    assert machine.do_await(tree) == WaitExternal(waiting_input=True, waiting_run=True)
    machine.propose_run_completion(run.handle, RunSucceeded(b'"ref"'))
    command, proposal = output_messages(machine)
    machine.feed(encode_message(pb.RunCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b'"ref"'))))

    assert isinstance(command, pb.RunCommandMessage) and command.name == "pay"
    assert isinstance(proposal, pb.ProposeRunCompletionMessage) and proposal.value == b'"ref"'
    assert machine.do_await(tree) == AnyCompleted()
    assert machine.take_notification(run.handle) == Value(b'"ref"')


def test_v6_proposal_has_no_ack_flag_but_v7_requests_an_ack() -> None:
    v6 = executing(version=6)
    v7 = executing(version=7)
    for machine in (v6, v7):
        run = machine.sys_run("r")
        machine.do_await(AwaitHandle(run.handle))
        machine.propose_run_completion(run.handle, RunSucceeded(b"1"))

    assert output_frames(v6)[-1] == (MessageType.PROPOSE_RUN_COMPLETION, 0)
    assert output_frames(v7)[-1] == (MessageType.PROPOSE_RUN_COMPLETION, REQUESTED_ACK)


def test_v7_run_completes_on_the_ack_with_the_proposed_value() -> None:
    machine = executing(version=7)
    run = machine.sys_run("r")
    machine.do_await(AwaitHandle(run.handle))
    machine.propose_run_completion(run.handle, RunFailedTerminally(Failure(code=418, message="teapot")))

    assert isinstance(machine.do_await(AwaitHandle(run.handle)), WaitExternal)
    machine.feed(encode_message(pb.ProposeRunCompletionAckMessage(completion_id=1)))

    assert machine.do_await(AwaitHandle(run.handle)) == AnyCompleted()
    assert machine.take_notification(run.handle) == Failure(code=418, message="teapot")


def test_ack_for_an_unknown_proposal_is_a_protocol_violation() -> None:
    machine = executing(version=7)

    machine.feed(encode_message(pb.ProposeRunCompletionAckMessage(completion_id=9)))

    [error] = output_messages(machine)
    assert isinstance(error, pb.ErrorMessage) and error.code == 571


def test_request_response_run_proposes_then_suspends() -> None:
    machine = executing(close_input=True)
    run = machine.sys_run("r")
    tree = AwaitHandle(run.handle)

    assert machine.do_await(tree) == ExecuteRun(run.handle)
    assert machine.do_await(tree) == WaitExternal(waiting_input=False, waiting_run=True)
    machine.propose_run_completion(run.handle, RunSucceeded(b"1"))

    assert machine.do_await(tree) == Suspended()
    types = [type(message).__name__ for message in output_messages(machine)]
    assert types == ["RunCommandMessage", "ProposeRunCompletionMessage", "SuspensionMessage"]


def test_journaled_run_is_replayed_not_executed() -> None:
    machine = executing(
        pb.RunCommandMessage(result_completion_id=1, name="pay"),
        pb.RunCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b'"ref"')),
    )

    run = machine.sys_run("pay")

    assert run.replayed
    assert machine.do_await(AwaitHandle(run.handle)) == AnyCompleted()
    assert machine.take_notification(run.handle) == Value(b'"ref"')


def test_retryable_run_failure_fails_the_attempt_with_a_retry_delay() -> None:
    machine = executing()
    run = machine.sys_run("flaky")
    machine.do_await(AwaitHandle(run.handle))
    policy = RunRetryPolicy(initial_interval_ms=50, max_attempts=3)

    machine.propose_run_completion(run.handle, RunFailedRetryably("boom", "trace", 5, policy))

    _, error = output_messages(machine)
    assert isinstance(error, pb.ErrorMessage)
    assert (error.code, error.message, error.stacktrace) == (500, "boom", "trace")
    assert error.next_retry_delay == 50
    assert (error.related_command_index, error.related_command_name) == (1, "flaky")
    assert error.related_command_type == MessageType.RUN_COMMAND
    with pytest.raises(AttemptFailedError):
        machine.do_await(AwaitHandle(run.handle))


def test_run_failure_becomes_terminal_after_max_attempts_counted_across_attempts() -> None:
    machine = executing(pb.RunCommandMessage(result_completion_id=1, name="flaky"), retry_count_since_last_stored_entry=2)
    run = machine.sys_run("flaky")
    machine.do_await(AwaitHandle(run.handle))

    machine.propose_run_completion(run.handle, RunFailedRetryably("boom", "", 1, RunRetryPolicy(max_attempts=3)))

    [proposal] = output_messages(machine)
    assert isinstance(proposal, pb.ProposeRunCompletionMessage)
    assert (proposal.failure.code, proposal.failure.message) == (500, "boom")


def test_run_without_policy_is_retried_with_the_runtime_delay() -> None:
    machine = executing(pb.RunCommandMessage(result_completion_id=1), retry_count_since_last_stored_entry=50)
    run = machine.sys_run()
    machine.do_await(AwaitHandle(run.handle))

    machine.propose_run_completion(run.handle, RunFailedRetryably("boom", "", 1, None))

    [error] = output_messages(machine)
    assert isinstance(error, pb.ErrorMessage) and not error.HasField("next_retry_delay")


# --- cancellation ------------------------------------------------------------------------------


def test_cancel_signal_cancels_children_and_is_reported_once() -> None:
    machine = executing(
        pb.CallCommandMessage(service_name="S", handler_name="h", invocation_id_notification_idx=1, result_completion_id=2),
        pb.CallInvocationIdCompletionNotificationMessage(completion_id=1, invocation_id="inv_child"),
        pb.SignalNotificationMessage(idx=1, void=pb.Void()),
    )
    call = machine.sys_call("S", "h", b"")

    assert machine.do_await(AwaitHandle(call.result_handle)) == CancelReceived()
    [send_signal] = output_messages(machine)
    later = machine.sys_sleep(1)

    assert isinstance(send_signal, pb.SendSignalCommandMessage)
    assert (send_signal.target_invocation_id, send_signal.idx) == ("inv_child", 1)
    assert send_signal.HasField("void")
    assert isinstance(machine.do_await(AwaitHandle(later)), WaitExternal)


def test_cancel_waits_for_the_child_invocation_id_before_propagating() -> None:
    machine = executing(close_input=True)
    call = machine.sys_call("S", "h", b"")
    machine.feed(encode_message(pb.SignalNotificationMessage(idx=1, void=pb.Void())))

    assert machine.do_await(AwaitHandle(call.result_handle)) == Suspended()

    suspension = output_messages(machine)[-1]
    assert isinstance(suspension, pb.SuspensionMessage)
    assert list(suspension.waiting_completions) == [1]


def test_every_await_also_waits_for_cancel() -> None:
    machine = executing(close_input=True)
    handle = machine.sys_get_promise("p")

    machine.do_await(AwaitHandle(handle))

    suspension = output_messages(machine)[-1]
    assert isinstance(suspension, pb.SuspensionMessage) and list(suspension.waiting_signals) == [1]


# --- state -------------------------------------------------------------------------------------


def complete_state(**values: bytes) -> dict[str, object]:
    entries = [pb.StartMessage.StateEntry(key=key.encode(), value=value) for key, value in values.items()]
    return {"state_map": entries, "partial_state": False}


def test_complete_eager_state_answers_inline() -> None:
    machine = executing(**complete_state(cart=b'{"items":[]}'))

    present = machine.sys_get_state("cart")
    absent = machine.sys_get_state("other")
    keys = machine.sys_get_state_keys()

    assert machine.take_notification(present) == Value(b'{"items":[]}')
    assert machine.take_notification(absent) == Void()
    assert machine.take_notification(keys) == StateKeys(("cart",))
    first, second, third = output_messages(machine)
    assert isinstance(first, pb.GetEagerStateCommandMessage) and first.value.content == b'{"items":[]}'
    assert isinstance(second, pb.GetEagerStateCommandMessage) and second.HasField("void")
    assert isinstance(third, pb.GetEagerStateKeysCommandMessage) and list(third.value.keys) == [b"cart"]


def test_partial_state_asks_the_runtime_lazily() -> None:
    machine = executing(close_input=True, partial_state=True)

    handle = machine.sys_get_state("cart")

    assert machine.do_await(AwaitHandle(handle)) == Suspended()
    get, suspension = output_messages(machine)
    assert isinstance(get, pb.GetLazyStateCommandMessage)
    assert (get.key, get.result_completion_id) == (b"cart", 1)
    assert isinstance(suspension, pb.SuspensionMessage) and list(suspension.waiting_completions) == [1]


def test_lazy_state_completes_from_its_notification() -> None:
    machine = executing(partial_state=True)
    handle = machine.sys_get_state("cart")
    machine.feed(encode_message(pb.GetLazyStateCompletionNotificationMessage(completion_id=1, value=pb.Value(content=b"7"))))

    assert machine.do_await(AwaitHandle(handle)) == AnyCompleted()
    assert machine.take_notification(handle) == Value(b"7")


def test_writes_update_what_later_reads_see() -> None:
    machine = executing(**complete_state(a=b"1", b=b"2"))

    machine.sys_set_state("c", b"3")
    machine.sys_clear_state("a")
    value = machine.sys_get_state("c")
    cleared = machine.sys_get_state("a")
    keys = machine.sys_get_state_keys()

    assert machine.take_notification(value) == Value(b"3")
    assert machine.take_notification(cleared) == Void()
    assert machine.take_notification(keys) == StateKeys(("b", "c"))


def test_clear_all_makes_partial_state_complete() -> None:
    machine = executing(partial_state=True)

    machine.sys_clear_all_state()
    handle = machine.sys_get_state("anything")

    assert machine.take_notification(handle) == Void()


def test_replayed_eager_get_uses_the_recorded_value() -> None:
    machine = executing(pb.GetEagerStateCommandMessage(key=b"cart", value=pb.Value(content=b"old")), **complete_state(cart=b"new"))

    handle = machine.sys_get_state("cart")

    assert machine.take_notification(handle) == Value(b"old")
    assert machine.take_output() == b""


# --- output --------------------------------------------------------------------------------------


def test_success_writes_output_then_end() -> None:
    machine = executing()

    machine.sys_write_output(Value(b'"done"'))
    machine.sys_end()

    output, end = output_messages(machine)
    assert isinstance(output, pb.OutputCommandMessage) and output.value.content == b'"done"'
    assert isinstance(end, pb.EndMessage)
    assert machine.phase is Phase.CLOSED


def test_terminal_failure_is_an_output_failure() -> None:
    machine = executing()

    machine.sys_write_output(Failure(code=404, message="nope", metadata=(("k", "v"),)))
    machine.sys_end()

    output, _ = output_messages(machine)
    assert isinstance(output, pb.OutputCommandMessage)
    assert (output.failure.code, output.failure.message) == (404, "nope")
    assert [(m.key, m.value) for m in output.failure.metadata] == [("k", "v")]


def test_handler_error_is_reported_for_retry() -> None:
    machine = executing()
    machine.sys_set_state("a", b"1")
    machine.take_output()

    machine.notify_error("ValueError('x')", "Traceback...")

    [error] = output_messages(machine)
    assert isinstance(error, pb.ErrorMessage)
    assert (error.code, error.message, error.stacktrace) == (500, "ValueError('x')", "Traceback...")
    assert not error.HasField("related_command_index")


def test_garbage_input_is_a_protocol_violation() -> None:
    machine = Machine(6)

    machine.feed(b"\x12\x34\x00\x00\x00\x00\x00\x00")

    [error] = output_messages(machine)
    assert isinstance(error, pb.ErrorMessage) and error.code == 571


def test_unsupported_version_is_refused() -> None:
    with pytest.raises(ValueError, match="not supported"):
        Machine(4)
