"""Settings the state machine needs to be deterministic: retry policy and retention defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff between failed attempts of an invocation."""

    initial_interval_ms: int = 50
    factor: float = 2.0
    max_interval_ms: int = 10_000
    max_attempts: int = 70  # then the invocation is paused (resume through the admin API)

    def delay_ms(self, retry_count: int) -> int:
        """Delay before retry number `retry_count` (1 for the first retry)."""
        assert retry_count >= 1, "retry counts start at 1"
        delay = self.initial_interval_ms * (self.factor ** (retry_count - 1))
        return int(min(delay, self.max_interval_ms))


@dataclass(frozen=True, slots=True)
class StateMachineConfig:
    partition: int
    retry_policy: RetryPolicy = RetryPolicy()
    completion_retention_ms: int = 60 * 60 * 1000  # keep outcomes of calls made by handlers this long
    idempotency_retention_ms: int = 24 * 60 * 60 * 1000
    workflow_retention_ms: int = 24 * 60 * 60 * 1000

    @property
    def producer_id(self) -> str:
        """The name this partition's outbox messages carry for deduplication."""
        return f"p{self.partition}"
