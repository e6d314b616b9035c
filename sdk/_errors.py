"""Exceptions of duro's SDK: the terminal error users raise, and the internal ones that stop a handler.

`TerminalError` ends an invocation with a failure the runtime does not retry.
The internal exceptions derive from `BaseException` so that a handler's
`except Exception:` cannot swallow a suspension or a protocol failure.
"""

from __future__ import annotations

from protocol.error_codes import InvocationErrorCode

CANCELLED_STATUS_CODE = InvocationErrorCode.ABORTED
JOURNAL_MISMATCH_CODE = InvocationErrorCode.JOURNAL_MISMATCH
PROTOCOL_VIOLATION_CODE = InvocationErrorCode.PROTOCOL_VIOLATION
UNSUPPORTED_FEATURE_CODE = InvocationErrorCode.UNSUPPORTED_FEATURE
INTERNAL_CODE = InvocationErrorCode.INTERNAL


class TerminalError(Exception):
    """Fails the invocation without retries; `status_code` becomes the HTTP status of the caller."""

    def __init__(
        self,
        message: str,
        status_code: int = INTERNAL_CODE,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.metadata = metadata


class SdkInternalBaseException(BaseException):
    """Stops handler code because the attempt is over; do not catch it.

    Catch `TerminalError` (or `Exception`) in handlers instead of using a bare
    `except:`, which would also catch this.
    """


class SuspendedError(SdkInternalBaseException):
    """The attempt suspended: the runtime resumes it once an awaited result exists."""

    def __init__(self) -> None:
        super().__init__("the invocation suspended; the runtime resumes it when it can progress")


class AttemptFailedError(SdkInternalBaseException):
    """The attempt failed with a protocol error (journal mismatch, violation, retryable run failure).

    The error has been reported to the runtime, which retries the invocation.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"invocation attempt failed with code {code}: {message}")
        self.code = code
        self.message = message


class DisconnectedError(SdkInternalBaseException):
    """The runtime closed the connection before the attempt finished; it will retry."""

    def __init__(self) -> None:
        super().__init__("the connection to the runtime was lost; the runtime retries the attempt")


def is_internal_exception(error: BaseException) -> bool:
    """True if `error` is one of the SDK's internal exceptions that must not be swallowed."""
    return isinstance(error, SdkInternalBaseException)
