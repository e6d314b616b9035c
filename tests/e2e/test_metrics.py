"""`GET /metrics` during a workload: each family the README documents moves as the workload says it must.

One `duro serve` on the embedded log with the official Python SDK's test
services; the sampled gauges are read every 200 ms. The test scrapes before,
during and after, and compares. The timer and inbox gauges are also compared
with a scan of the stopped node's rows, and again after a restart on a data
dir whose counts were removed (as one written before apply kept them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from partition_worker import keys
from partition_worker.state_machine import counts
from partition_worker.store import RocksDatabase
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

    def appended(samples: Samples) -> float:
        return total(samples, "duro_log_append_batch_records_sum", backend="embedded")

    def applied(samples: Samples) -> float:
        return total(samples, "duro_partition_applied_offset")

    # Every record appended since `before` is counted by the log (even one whose caller was cancelled once it was
    # durable, as an attempt is when its end applies) and applied: the two agree once the node is idle.
    after = scrape_when(
        duro,
        lambda s: total(s, "duro_inbox_length", service="Durable") == 0 and appended(s) - appended(before) == applied(s) - applied(before),
        "the inbox to drain and every appended record to be counted and applied",  # timers stay: each completed invocation keeps one
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
    records = appended(after) - appended(before)
    assert appends >= CALLS * 2, "an Invoke and the attempt's events per call at least"
    assert records >= appends
    assert total(after, "duro_partition_applied_offset") > total(before, "duro_partition_applied_offset") + CALLS
    assert total(after, "duro_partition_apply_lag_records") == 0, "an idle node has applied everything"
    assert total(after, "duro_rocksdb_size_bytes") > 0
    status, _, body = duro.call("/Counter/m0/get")
    assert json.loads(body) == CALLS // 5


def query(server: DuroServer, sql: str) -> list[dict[str, object]]:
    status, _, body = http("POST", f"{server.admin}/query", {"query": sql}, {"accept": "application/json"})
    assert status == 200, body
    return json.loads(body)["rows"]  # type: ignore[no-any-return]


def test_timer_and_inbox_gauges_equal_the_rows_and_are_recounted_for_a_data_dir_from_before_the_counts(duro: DuroServer) -> None:
    for i in range(5):
        assert duro.call(f"/Counter/r{i}/add", 1)[0] == 200  # each completion keeps retention timers
    status, _, body = duro.call("/Durable/parked/step_sleep_step/send", 600_000)
    assert status == 202, body
    sleeper = json.loads(body)["invocationId"]
    assert duro.call("/Durable/parked/step_sleep_step/send", 600_000)[0] == 202  # waits in the key's inbox behind the sleeper
    sleep_entry = f"SELECT id FROM sys_journal WHERE id = '{sleeper}' AND entry_type = 'Command: Sleep'"
    wait_until(lambda: query(duro, sleep_entry), 30, "the sleep in the journal (its timer armed)")
    scrape_when(duro, lambda s: total(s, "duro_inbox_length", service="Durable") == 1, "the queued call in the inbox gauge")
    duro.stop()

    database = RocksDatabase(str(duro.data_dir / "state"))
    try:
        stores = [database.partition(partition) for partition in range(PARTITIONS)]
        rows = [counts.scan(store) for store in stores]
        assert [counts.read(store) for store in stores] == rows, "the counts the node kept equal its rows"
        for store in stores:  # as in a data dir written before apply kept counts
            counted = [row for row, _ in store.scan(bytes([keys.Table.COUNT]))]
            store.write({**dict.fromkeys(counted), keys.COUNTS_COMPLETE: None})
            assert counts.read(store) is None
    finally:
        database.close()
    timers = sum(partition.timers for partition in rows)
    assert sum(partition.inbox_by_service.get("Durable", 0) for partition in rows) == 1
    assert timers >= 6, "a retention timer per completed call and the sleep"

    duro.env["DURO_METRICS_MAX_SCAN_ROWS"] = "5000"  # deprecated: still accepted, with a warning
    duro.start()
    duro.wait_ready()
    scrape_when(
        duro,
        lambda s: total(s, "duro_timers_pending") == timers and total(s, "duro_inbox_length", service="Durable") == 1,
        f"the recounted gauges: {timers} timers, 1 inbox entry",
    )
    log = duro.log_path.read_text()
    assert "timers and" in log and "inbox entries once" in log, "the processors counted the store once at start"
    assert "metrics_max_scan_rows is deprecated and ignored" in log
