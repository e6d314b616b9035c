"""SIGTERM on a node of a 3-node Kafka cluster under load: it drains, hands its partitions over and exits 0; nothing acknowledged is lost.

Clients call every node, each logical request with its own idempotency key,
and retry a retriable answer (503, 429, a refused or dropped connection) on the
next node. The test prints how long the partitions took to move after SIGTERM
and after a kill -9 of another node.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.test_kafka_cluster import PARTITIONS, SESSION_TIMEOUT_MS, Cluster, counter
from tests.processes import DuroServer, http, wait_until

RETRIABLE_STATUSES = frozenset({429, 503})
MAX_TRIES = 200
GRACE_S = 30.0  # what Kubernetes would give the pod (the chart's terminationGracePeriodSeconds)


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, kafka_bootstrap)
    cluster.service.start()
    try:
        cluster.service.wait_ready()
        yield cluster
    finally:
        cluster.stop_all()


class Clients:
    """Threads that call Counter.add through every node until told to stop, retrying retriable answers on the next node."""

    def __init__(self, nodes: list[DuroServer]) -> None:
        self.nodes = nodes
        self.acknowledged: Counter[str] = Counter()
        self.retriable: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.given_up = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def run(self, worker: int) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"key-{(worker * 7 + i) % 24}"
            path = f"/Counter/{key}/add" + ("/send" if i % 3 == 0 else "")
            if self._until_acknowledged(worker + i, path, str(uuid.uuid4())):
                with self._lock:
                    self.acknowledged[key] += 1
            i += 1

    def stop(self) -> None:
        self._stop.set()

    def _until_acknowledged(self, start: int, path: str, idempotency_key: str) -> bool:
        for attempt in range(MAX_TRIES):
            index = (start + attempt) % len(self.nodes)
            node = self.nodes[index]
            try:
                status, _, body = node.call(path, 1, headers={"idempotency-key": idempotency_key}, timeout_s=60)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                self._count(f"node {index + 1}: connection {type(exc).__name__}")
                time.sleep(0.05)
                continue
            if status in (200, 202):
                return True
            if status in RETRIABLE_STATUSES:
                self._count(f"node {index + 1}: HTTP {status}")
                time.sleep(0.05)
                continue
            with self._lock:
                self.unexpected.append(f"{path} at node :{node.ingress_port}: {status} {body[:200]!r}")
            return False
        with self._lock:
            self.given_up += 1
        return False

    def _count(self, what: str) -> None:
        with self._lock:
            self.retriable[what] += 1


def _moved_after_s(cluster: Cluster, survivors: list[DuroServer], since: float) -> float:
    wait_until(lambda: set().union(*(cluster.owned(n) for n in survivors)) == set(range(PARTITIONS)), 60, "the partitions to move")
    return time.monotonic() - since


def test_sigterm_drains_and_hands_over_under_load_without_losing_acknowledged_work(cluster: Cluster) -> None:
    nodes = [cluster.start_node(i) for i in (1, 2, 3)]
    cluster.wait_balanced(nodes)
    nodes[0].register(cluster.service.uri)
    wait_until(lambda: all(http("GET", f"{n.admin}/services/Counter")[0] == 200 for n in nodes), 20, "the registry on every node")
    first, second, third = nodes
    clients = Clients(nodes)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(clients.run, w) for w in range(6)]
        wait_until(lambda: sum(clients.acknowledged.values()) >= 30, 60, "the load to get going")

        assert third.process is not None
        assert cluster.owned(third), "the node to stop owns partitions"
        signalled = time.monotonic()
        third.process.send_signal(signal.SIGTERM)
        moved_after_sigterm_s = _moved_after_s(cluster, [first, second], signalled)
        exit_code = third.process.wait(timeout=GRACE_S)
        exited_after_s = time.monotonic() - signalled
        drained = [line for line in third.log_path.read_text().splitlines() if "drained in" in line]

        acknowledged_before_kill = sum(clients.acknowledged.values())
        wait_until(lambda: sum(clients.acknowledged.values()) >= acknowledged_before_kill + 20, 60, "load on the two survivors")
        killed = time.monotonic()
        second.kill9()
        moved_after_kill_s = _moved_after_s(cluster, [first], killed)
        acknowledged_after_kill = sum(clients.acknowledged.values())
        wait_until(lambda: sum(clients.acknowledged.values()) >= acknowledged_after_kill + 10, 60, "load on the last node")
        clients.stop()
        for future in futures:
            future.result()

    print(
        f"\nSIGTERM: partitions moved {moved_after_sigterm_s:.1f} s after the signal, the node exited after {exited_after_s:.1f} s;"
        f" kill -9: partitions moved {moved_after_kill_s:.1f} s after the kill (session timeout {SESSION_TIMEOUT_MS} ms);"
        f" {sum(clients.acknowledged.values())} adds acknowledged, retriable answers seen: {dict(clients.retriable)}"
    )
    print(drained[-1] if drained else "(no drain line)")
    assert exit_code == 0, third.log_tail()
    assert drained, f"the node logs what its graceful phase did:\n{third.log_tail()}"
    assert clients.unexpected == [], "clients see only retriable errors"
    assert clients.given_up == 0
    # A member that stops heartbeating keeps its partitions for the whole session timeout; moving sooner means it left the group.
    assert moved_after_sigterm_s < SESSION_TIMEOUT_MS / 1000, f"{moved_after_sigterm_s:.1f} s: the node did not leave the group"
    for key, count in clients.acknowledged.items():
        wait_until(lambda key=key, count=count: counter(first, key) == count, 60, f"counter {key} to reach {count}")
    values = {key: counter(first, key) for key in clients.acknowledged}
    assert values == dict(clients.acknowledged), "each acknowledged add counted exactly once"


def test_a_lone_node_on_the_embedded_log_exits_0_on_sigterm_and_refuses_requests_while_it_drains(
    tmp_path: Path, official_python_service
) -> None:  # type: ignore[no-untyped-def]
    node = DuroServer(tmp_path / "data", tmp_path / "duro.log", env={"DURO_SHUTDOWN__ATTEMPT_DRAIN_TIMEOUT_MS": "3000"})
    node.start()
    try:
        node.wait_ready()
        node.register(official_python_service.uri)
        assert node.call("/Counter/a/add", 5)[0] == 200
        # An attempt that waits on a 60 s sleep: the drain closes its stream and the SDK suspends at once.
        status, _, body = node.call("/Steps/sleep_then/send", 60_000)
        assert status == 202, body
        invocation_id = json.loads(body)["invocationId"]
        wait_until(lambda: _journal_length(node, invocation_id) >= 2, 30, "the attempt to journal its sleep")
        assert node.process is not None
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        exit_code = node.process.wait(timeout=GRACE_S)
        elapsed_s = time.monotonic() - started
    finally:
        node.stop()
    lines = node.log_path.read_text().splitlines()
    drained = [line for line in lines if "drained in" in line]
    print(f"\nembedded SIGTERM: exited after {elapsed_s:.2f} s; {drained[-1] if drained else lines[-5:]}")
    assert exit_code == 0
    assert drained and " 0 aborted" in drained[-1], "the waiting attempt suspended instead of being aborted"
    restarted = DuroServer(tmp_path / "data", tmp_path / "duro-2.log")
    restarted.start()
    try:
        restarted.wait_ready()
        status, _, body = restarted.call("/Counter/a/get")
        assert (status, json.loads(body)) == (200, 5)
    finally:
        restarted.stop()


def _journal_length(node: DuroServer, invocation_id: str) -> int:
    query = {"query": f"SELECT journal_size FROM sys_invocation WHERE id = '{invocation_id}'"}
    status, _, body = http("POST", f"{node.admin}/query", query, headers={"accept": "application/json"})
    assert status == 200, body
    rows = json.loads(body)["rows"]
    return int(rows[0]["journal_size"]) if rows else 0
