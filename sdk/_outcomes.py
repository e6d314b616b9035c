"""Values the protocol machine hands to its driver: the invocation input, await outcomes, handles and run outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from sdk._errors import INTERNAL_CODE
from sdk._results import Failure
from sdk._retry import RunRetryPolicy


@dataclass(frozen=True)
class InvocationInput:
    """What the handler learns from Start and the Input command."""

    invocation_id: str
    invocation_id_bytes: bytes
    key: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    random_seed: int
    scope: str | None
    limit_key: str | None
    idempotency_key: str | None


@dataclass(frozen=True)
class AnyCompleted:
    """The awaited tree is resolved: take its notifications."""


@dataclass(frozen=True)
class ExecuteRun:
    """Execute the action of this run handle, then propose its result."""

    handle: int


@dataclass(frozen=True)
class WaitExternal:
    """Nothing to do until input arrives or an executing run finishes."""

    waiting_input: bool
    waiting_run: bool


@dataclass(frozen=True)
class CancelReceived:
    """The invocation was cancelled; children were told; raise TerminalError 409."""


@dataclass(frozen=True)
class Suspended:
    """The attempt suspended (Suspension written, machine closed)."""


AwaitOutcome = Union[AnyCompleted, ExecuteRun, WaitExternal, CancelReceived, Suspended]


@dataclass(frozen=True)
class CallHandles:
    """The two notifications a Call produces."""

    invocation_id_handle: int
    result_handle: int


@dataclass(frozen=True)
class RunHandle:
    """A run's result handle; `replayed` means its result is journaled and the action must not run."""

    handle: int
    replayed: bool


@dataclass(frozen=True)
class RunSucceeded:
    """The run's action returned this serialized value."""

    value: bytes


@dataclass(frozen=True)
class RunFailedTerminally:
    """The run's action raised a terminal failure."""

    failure: Failure


@dataclass(frozen=True)
class RunFailedRetryably:
    """The run's action raised an ordinary exception."""

    message: str
    stacktrace: str
    attempt_duration_ms: int
    policy: RunRetryPolicy | None
    code: int = INTERNAL_CODE


RunOutcome = Union[RunSucceeded, RunFailedTerminally, RunFailedRetryably]
