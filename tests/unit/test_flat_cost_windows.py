"""The flat-cost benchmark's drain windows, from polls of a key's completed count."""

from __future__ import annotations

from benchmarks.flat_cost import DrainSample, drain_figures


def test_windows_of_a_slow_drain_start_at_the_poll_before_them() -> None:
    samples = [DrainSample(0.1 * i, 20 + 10 * i, 0.001 * 10 * i) for i in range(39)]  # 20, 30, ..., 400: 1 ms of CPU each
    figures = drain_figures(samples, queued=400, window=60)
    assert figures["queue_at_start"] == 380 and figures["from_completed"] == 20 and figures["invocations"] == 60
    assert figures["runtime_cpu_ms_per_invocation"] == 1.0 and figures["throughput_per_s"] == 100.0
    assert figures["tail"]["from_completed"] == 340 and figures["tail"]["invocations"] == 50


def test_a_drain_faster_than_the_polls_still_has_a_tail_window() -> None:
    """Seen in CI: the count jumped from 120 to 400 between two polls, past the tail's start and end."""
    samples = [DrainSample(0.0, 19, 0.0), DrainSample(0.2, 120, 0.1), DrainSample(0.4, 400, 0.4)]
    figures = drain_figures(samples, queued=400, window=60)
    assert figures["from_completed"] == 19 and figures["invocations"] == 101
    assert figures["tail"]["from_completed"] == 120 and figures["tail"]["invocations"] == 280
