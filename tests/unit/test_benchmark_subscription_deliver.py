"""`python -m benchmarks.subscription_deliver` runs the consumer's delivery in process and settles every record it appended."""

from __future__ import annotations

import pytest

from benchmarks import subscription_deliver


def test_the_consumer_benchmark_delivers_and_settles_every_record(capsys: pytest.CaptureFixture[str]) -> None:
    assert subscription_deliver.main(["--batch-records", "1", "--batch-records", "7", "--records", "40", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["batches of 1", "batches of 7"]
    assert all(float(line.split(": ")[1].split()[0]) > 0 for line in lines)
