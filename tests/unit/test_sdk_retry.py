"""Tests the retry decisions of `ctx.run` failures and their mapping from RunOptions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sdk import RunOptions
from sdk._retry import GiveUp, RetryAfter, RunRetryPolicy, next_retry, policy_from_options


def test_no_policy_retries_forever_with_the_runtime_delay() -> None:
    assert next_retry(None, 1000, 10**9) == RetryAfter(None)


def test_exponential_delays_capped_by_max_interval() -> None:
    policy = RunRetryPolicy(initial_interval_ms=100, factor=2.0, max_interval_ms=500)

    delays = [next_retry(policy, count, 0) for count in (1, 2, 3, 4)]

    assert delays == [RetryAfter(100), RetryAfter(200), RetryAfter(400), RetryAfter(500)]


def test_max_attempts_counts_the_first_attempt() -> None:
    policy = RunRetryPolicy(max_attempts=3)

    assert isinstance(next_retry(policy, 2, 0), RetryAfter)
    assert next_retry(policy, 3, 0) == GiveUp()


def test_max_duration_gives_up() -> None:
    policy = RunRetryPolicy(max_duration_ms=1_000)

    assert isinstance(next_retry(policy, 5, 999), RetryAfter)
    assert next_retry(policy, 5, 1_000) == GiveUp()


def test_options_without_retry_fields_leave_retries_to_the_runtime() -> None:
    assert RunOptions().retry_policy() is None


def test_options_map_to_a_policy_with_defaults() -> None:
    policy = RunOptions(max_attempts=4, max_retry_interval=timedelta(seconds=2)).retry_policy()

    assert policy == RunRetryPolicy(initial_interval_ms=50, factor=2.0, max_interval_ms=2_000, max_attempts=4)


def test_deprecated_max_retry_duration_is_honoured() -> None:
    policy = RunOptions(max_retry_duration=timedelta(seconds=3)).retry_policy()

    assert policy is not None and policy.max_duration_ms == 3_000


def test_zero_max_attempts_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        policy_from_options(0, None, None, None, None)
