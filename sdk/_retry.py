"""Decides whether a failed `ctx.run` attempt is retried, and after what delay, or becomes terminal.

A run whose action raises an ordinary exception is retried by failing the whole
invocation attempt with an ErrorMessage; the runtime re-invokes and the run is
executed again. The runtime tells each new attempt how many retries happened
since the last stored journal entry (`StartMessage.retry_count_since_last_stored_entry`),
which is what lets `max_attempts` count across attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

DEFAULT_INITIAL_INTERVAL_MS = 50
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_INTERVAL_MS = 10_000


@dataclass(frozen=True)
class RunRetryPolicy:
    """Exponential retry of a run; None fields are unbounded.

    With no policy at all (None where one is expected) a run is retried forever
    with the runtime's invocation retry delays.
    """

    initial_interval_ms: int = DEFAULT_INITIAL_INTERVAL_MS
    """Delay before the first retry."""
    factor: float = DEFAULT_FACTOR
    """Each further delay is the previous one times this factor."""
    max_interval_ms: int | None = DEFAULT_MAX_INTERVAL_MS
    """Upper bound of any delay."""
    max_attempts: int | None = None
    """Attempts, the first included, before the failure becomes terminal."""
    max_duration_ms: int | None = None
    """Total time spent retrying before the failure becomes terminal."""


@dataclass(frozen=True)
class RetryAfter:
    """Fail this attempt; the runtime retries after `delay_ms` (None: the runtime's own delay)."""

    delay_ms: int | None


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying: the failure is journaled as the run's terminal result."""


RetryDecision = Union[RetryAfter, GiveUp]


def next_retry(policy: RunRetryPolicy | None, retry_count: int, retry_loop_ms: int) -> RetryDecision:
    """What to do after the `retry_count`-th failure (1 = the first), `retry_loop_ms` into retrying."""
    if policy is None:
        return RetryAfter(None)
    if policy.max_attempts is not None and policy.max_attempts <= retry_count:
        return GiveUp()
    if policy.max_duration_ms is not None and policy.max_duration_ms <= retry_loop_ms:
        return GiveUp()
    delay_ms = policy.initial_interval_ms * policy.factor ** max(retry_count - 1, 0)
    if policy.max_interval_ms is not None:
        delay_ms = min(delay_ms, policy.max_interval_ms)
    return RetryAfter(int(delay_ms))


def policy_from_options(
    max_attempts: int | None,
    max_duration_ms: int | None,
    initial_interval_ms: int | None,
    max_interval_ms: int | None,
    factor: float | None,
) -> RunRetryPolicy | None:
    """The policy for a run's options; None (retry forever, runtime delays) when none is set."""
    options = (max_attempts, max_duration_ms, initial_interval_ms, max_interval_ms, factor)
    if all(option is None for option in options):
        return None
    if max_attempts is not None and max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1 (the first attempt counts), got {max_attempts}")
    return RunRetryPolicy(
        initial_interval_ms=DEFAULT_INITIAL_INTERVAL_MS if initial_interval_ms is None else initial_interval_ms,
        factor=DEFAULT_FACTOR if factor is None else factor,
        max_interval_ms=DEFAULT_MAX_INTERVAL_MS if max_interval_ms is None else max_interval_ms,
        max_attempts=max_attempts,
        max_duration_ms=max_duration_ms,
    )
