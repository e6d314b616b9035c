"""Invocation error codes: the one table the runtime and duro's SDK share, with Restate's numbers.

The numbers are Restate's (`InvocationErrorCode` in its types crate, and the
codes its SDKs put in `ErrorMessage`); HTTP-like, they travel in `Failure.code`
of the log, in the protocol's `ErrorMessage.code` and `Failure.code`, and become
the HTTP status a waiting caller gets. Several names share one number as in
Restate (a killed, a cancelled and a conflicting invocation all fail with 409).
Never renumber: codes are stored in the log and in completed invocations.
"""

from __future__ import annotations

import enum


class InvocationErrorCode(enum.IntEnum):
    """The codes an invocation or an attempt fails with. A handler's own `TerminalError` may carry any other code."""

    BAD_REQUEST = 400  # the input could not be read
    NOT_FOUND = 404  # no such service, handler or invocation
    CONFLICT = 409  # e.g. a promise completed twice, a workflow run invoked twice
    ABORTED = 409  # cancelled ("canceled")
    KILLED = 409  # killed ("killed")
    GONE = 410  # the invocation or its input is no longer kept
    NOT_READY = 470  # the invocation exists but has no outcome yet
    INTERNAL = 500  # anything unexpected, also an attempt that ended without saying how
    UNAVAILABLE = 503  # duro's: the deployment could not be reached or ended the stream early; the attempt is retried
    DEADLOCK = 508  # duro's: the call closed a cycle of exclusive invocations waiting on each other (HTTP "Loop Detected")
    JOURNAL_MISMATCH = 570  # the SDK's replay diverged from the recorded journal
    PROTOCOL_VIOLATION = 571  # a message that the receiver's state does not allow (also a write in a read-only handler)
    UNSUPPORTED_FEATURE = 573  # the SDK met a protocol feature it does not support
    CLOSED = 598  # duro's SDK: the attempt already ended (End or Suspension was written)


CANCELED_MESSAGE = "canceled"
KILLED_MESSAGE = "killed"
PROMISE_ALREADY_COMPLETED_MESSAGE = "promise was already completed"
WORKFLOW_ALREADY_INVOKED_MESSAGE = "the workflow method was already invoked"
