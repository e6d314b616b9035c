"""`GET /metrics` during a workload: each family the README documents moves as the workload says it must.

One `duro serve` on the embedded log with the official Python SDK's test
services; the sampled gauges are read every 200 ms. The test scrapes before,
during and after, and compares.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import DuroServer, ServiceEndpoint, http, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PARTITIONS = 4
CALLS = 20


@pytest.fixture
def duro(tmp_path: Path, official_python_service: ServiceEndpoint) -> Iterator[DuroServer]:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=PARTITIONS, env={"DURO_METRICS_SAMPLE_INTERVAL_MS": "200"})
    server.start()
    try:
        server.wait_ready()
        server.register(official_python_service.uri)
        yield server
    finally:
        server.stop()


def scrape(server: DuroServer) -> Samples:
    status, headers, body = http("GET", f"{server.admin}/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), (status, headers)
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape_when(server: DuroServer, condition: Callable[[Samples], bool], what: str) -> Samples:
    def check() -> Samples | None:
        samples = scrape(server)
        return samples if condition(samples) else None

    return wait_until(check, 30, what)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


def test_metrics_move_with_the_workload(duro: DuroServer) -> None:
    before = scrape(duro)
    assert total(before, "duro_partition_is_leader") == PARTITIONS, "this node leads every partition"
    assert total(before, "duro_partition_leader_changes_total") == PARTITIONS, "each partition announced its leader once"

    for i in range(CALLS):
        status, _, body = duro.call(f"/Counter/m{i % 5}/add", 1)
        assert status == 200, body
    assert duro.call("/Steps/fail_terminal", "no")[0] == 418
    assert duro.call("/Steps/flaky", "metrics")[0] == 200
    assert duro.call("/Nope/nothing", 1)[0] == 404

    # A sleeping exclusive handler holds its key: a second call to the key waits in the inbox, and a timer is armed.
    assert duro.call("/Durable/held/step_sleep_step/send", 2_500)[0] == 202
    queued: list[int] = []
    waiter = threading.Thread(target=lambda: queued.append(duro.call("/Durable/held/step_sleep_step", 1, timeout_s=60)[0]))
    waiter.start()
    during = scrape_when(
        duro,
        lambda s: total(s, "duro_inbox_length", service="Durable") >= 1 and total(s, "duro_timers_pending") >= 1,
        "an inbox entry and a timer in the sampled gauges",
    )
    assert total(during, "duro_invoker_inflight_attempts") >= 1, "the sleeping attempt is still open (bidirectional)"
    waiter.join(timeout=60)
    assert queued == [200]

    after = scrape_when(
        duro,
        lambda s: total(s, "duro_inbox_length", service="Durable") == 0,
        "the inbox to drain",  # timers stay: completed invocations keep a retention timer each
    )
    counted = total(after, "duro_invocations_total", service="Counter", handler="add", status="succeeded") - total(
        before, "duro_invocations_total", service="Counter", handler="add", status="succeeded"
    )
    assert counted == CALLS
    assert total(after, "duro_invocations_total", service="Steps", handler="fail_terminal", status="failed") == 1
    assert total(after, "duro_invocations_total", service="Steps", handler="flaky", status="succeeded") == 1
    assert total(after, "duro_invoker_attempts_total", service="Steps", handler="flaky", outcome="error") == 2, "two failed tries"
    assert total(after, "duro_invoker_retries_total", service="Steps", handler="flaky") == 2
    assert (
        total(after, "duro_invoker_attempts_total", service="Durable", outcome="suspended")
        + total(after, "duro_invoker_attempts_total", service="Durable", outcome="completed")
        >= 2
    )
    assert total(after, "duro_invoker_attempt_duration_seconds_count", service="Counter", handler="add", outcome="completed") == counted
    assert total(after, "duro_invoker_inflight_attempts") == 0

    calls_200 = total(after, "duro_ingress_request_duration_seconds_count", kind="call", status="200") - total(
        before, "duro_ingress_request_duration_seconds_count", kind="call", status="200"
    )
    assert calls_200 == CALLS + 2  # the counter calls, flaky, and the queued Durable call
    assert total(after, "duro_ingress_request_duration_seconds_count", status="404") == 1
    assert total(after, "duro_ingress_request_duration_seconds_count", status="418") == 1

    appends = total(after, "duro_log_append_duration_seconds_count", backend="embedded") - total(
        before, "duro_log_append_duration_seconds_count", backend="embedded"
    )
    records = total(after, "duro_log_append_batch_records_sum", backend="embedded") - total(
        before, "duro_log_append_batch_records_sum", backend="embedded"
    )
    assert appends >= CALLS * 2, "an Invoke and the attempt's events per call at least"
    assert records >= appends
    assert total(after, "duro_partition_applied_offset") > total(before, "duro_partition_applied_offset") + CALLS
    assert total(after, "duro_partition_apply_lag_records") == 0, "an idle node has applied everything"
    assert total(after, "duro_rocksdb_size_bytes") > 0
    status, _, body = duro.call("/Counter/m0/get")
    assert json.loads(body) == CALLS // 5
