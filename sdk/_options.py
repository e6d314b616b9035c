"""Option records of the SDK: how a `ctx.run` is retried and serialized, and a handler's invocation retry policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from sdk._retry import RunRetryPolicy, policy_from_options
from sdk._serde import DefaultSerde, Serde

T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions(Generic[T]):
    """Options of `ctx.run_typed`."""

    serde: Serde[T] = field(default_factory=DefaultSerde)
    """Serializes the action's result; by default chosen from `type_hint`."""
    type_hint: Any | None = None
    """The result type; by default the action's return annotation."""
    max_attempts: int | None = None
    """Attempts (the first included) before the failure becomes a TerminalError."""
    max_duration: timedelta | None = None
    """Time spent retrying before the failure becomes a TerminalError."""
    initial_retry_interval: timedelta | None = None
    """First retry delay; 50 ms when any retry option is set, else the runtime's policy applies."""
    max_retry_interval: timedelta | None = None
    """Upper bound of a retry delay; 10 s by default."""
    retry_interval_factor: float | None = None
    """Growth factor of the retry delay; 2 by default."""
    max_retry_duration: timedelta | None = None
    """Deprecated alias of `max_duration`."""

    def retry_policy(self) -> RunRetryPolicy | None:
        """The retry policy these options describe (None: retry forever with the runtime's delays)."""
        max_duration = self.max_duration if self.max_duration is not None else self.max_retry_duration
        return policy_from_options(
            max_attempts=self.max_attempts,
            max_duration_ms=_millis(max_duration),
            initial_interval_ms=_millis(self.initial_retry_interval),
            max_interval_ms=_millis(self.max_retry_interval),
            factor=self.retry_interval_factor,
        )


@dataclass(frozen=True)
class InvocationRetryPolicy:
    """How the runtime retries failed invocations of a service or handler (manifest v4)."""

    initial_interval: timedelta | None = None
    """Delay before the first retry."""
    exponentiation_factor: float | None = None
    """Growth factor of the delay."""
    max_interval: timedelta | None = None
    """Upper bound of a delay."""
    max_attempts: int | None = None
    """Attempts, the first included, before `on_max_attempts` applies."""
    on_max_attempts: Literal["pause", "kill"] | None = None
    """What the runtime does when attempts run out."""


def _millis(duration: timedelta | None) -> int | None:
    return None if duration is None else int(duration.total_seconds() * 1000)
