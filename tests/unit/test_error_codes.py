"""The invocation error code table: Restate's numbers, shared by the runtime and duro's SDK."""

from __future__ import annotations

from partition_worker.state_machine import lifecycle
from protocol.error_codes import WORKFLOW_ALREADY_INVOKED_MESSAGE, InvocationErrorCode
from sdk import _errors, _handler, _machine


def test_codes_are_restates_numbers() -> None:
    """From Restate's `codes` (crates/types/src/errors.rs) and its SDKs' ErrorMessage codes; stored in the log, never renumbered."""
    assert {code.name: int(code) for code in InvocationErrorCode.__members__.values()} == {
        "BAD_REQUEST": 400,
        "NOT_FOUND": 404,
        "CONFLICT": 409,
        "GONE": 410,
        "NOT_READY": 470,
        "INTERNAL": 500,
        "UNAVAILABLE": 503,
        "DEADLOCK": 508,  # duro's: a call that closed a wait-for cycle
        "JOURNAL_MISMATCH": 570,
        "PROTOCOL_VIOLATION": 571,
        "UNSUPPORTED_FEATURE": 573,
        "CLOSED": 598,
    }
    assert InvocationErrorCode.ABORTED is InvocationErrorCode.KILLED is InvocationErrorCode.CONFLICT, "Restate's 409 has three names"


def test_the_sdk_and_the_runtime_use_the_same_table() -> None:
    assert _errors.JOURNAL_MISMATCH_CODE is InvocationErrorCode.JOURNAL_MISMATCH
    assert _errors.PROTOCOL_VIOLATION_CODE is InvocationErrorCode.PROTOCOL_VIOLATION
    assert _errors.INTERNAL_CODE is InvocationErrorCode.INTERNAL
    assert _errors.CANCELLED_STATUS_CODE is InvocationErrorCode.ABORTED
    assert _handler.BAD_REQUEST_CODE is InvocationErrorCode.BAD_REQUEST
    assert _machine.CLOSED_CODE is InvocationErrorCode.CLOSED
    assert lifecycle.WORKFLOW_ALREADY_INVOKED == WORKFLOW_ALREADY_INVOKED_MESSAGE == "the workflow method was already invoked"
