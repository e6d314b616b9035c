"""Several `duro serve --log kafka` nodes on a real broker: shared registry, cross-node replies, failover, zombies, cold nodes.

Every test uses its own topics (so its own consumer group) on the session's
broker, except the broker-restart test, which stops a broker of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from protocol.routing import partition_key_of
from tests.kafka_broker import KafkaBroker, unavailable_reason
from tests.processes import DuroServer, ServiceEndpoint, http, wait_until
from wal.partitioner import partition_of

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6_000  # the broker's default group.min.session.timeout.ms


class Cluster:
    def __init__(self, tmp: Path, bootstrap: str) -> None:
        self.tmp = tmp
        self.bootstrap = bootstrap
        self.topic = f"duro-test-{uuid.uuid4().hex[:8]}"
        self.nodes: dict[int, DuroServer] = {}
        self.side_effects = tmp / "side-effects.log"
        self.service = ServiceEndpoint(
            "tests.services.official_python:app", tmp / "service.log", {"DURO_TEST_SIDE_EFFECTS": str(self.side_effects)}
        )

    def start_node(self, node_id: int, data_name: str | None = None, extra_env: dict[str, str] | None = None) -> DuroServer:
        args = ["--log", "kafka", "--kafka-bootstrap", self.bootstrap, "--kafka-topic", self.topic, "--node-id", str(node_id)]
        env = {
            "DURO_KAFKA_METADATA_TOPIC": f"{self.topic}.meta",
            "DURO_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            **(extra_env or {}),
        }
        data = self.tmp / (data_name or f"node-{node_id}")
        node = DuroServer(data, self.tmp / f"node-{node_id}-{time.monotonic_ns()}.log", partitions=PARTITIONS, extra_args=args, env=env)
        node.start()
        node.wait_ready(timeout_s=60)
        self.nodes[node_id] = node
        return node

    def owned(self, node: DuroServer) -> set[int]:
        """The partitions a node's log says it runs now."""
        runs = [line for line in node.log_path.read_text().splitlines() if " runs partitions " in line]
        return set(json.loads(runs[-1].split(" runs partitions ", 1)[1])) if runs else set()

    def wait_balanced(self, nodes: list[DuroServer], timeout_s: float = 60) -> None:
        def balanced() -> bool:
            owned = [self.owned(n) for n in nodes]
            return all(owned) and set().union(*owned) == set(range(PARTITIONS)) and sum(map(len, owned)) == PARTITIONS

        wait_until(balanced, timeout_s, f"partitions spread over nodes {[n.admin_port for n in nodes]}")

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.service.stop()


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, kafka_bootstrap)
    cluster.service.start()
    try:
        cluster.service.wait_ready()
        yield cluster
    finally:
        cluster.stop_all()


def counter(node: DuroServer, key: str) -> int:
    status, _, body = node.call(f"/Counter/{key}/get", timeout_s=60)
    assert status == 200, body
    return int(json.loads(body))


def test_registry_is_shared_and_any_node_answers_for_any_partition(cluster: Cluster) -> None:
    first, second, third = (cluster.start_node(i) for i in (1, 2, 3))
    cluster.wait_balanced([first, second, third])
    first.register(cluster.service.uri)
    wait_until(lambda: http("GET", f"{third.admin}/services/Counter")[0] == 200, 20, "the registration to reach node 3")
    keys = [f"k{i}" for i in range(12)]
    for i, key in enumerate(keys):
        node = (first, second, third)[i % 3]
        status, _, body = node.call(f"/Counter/{key}/add", 2)
        assert (status, json.loads(body)) == (200, 2), body
    assert [counter(third, key) for key in keys] == [2] * len(keys)
    for node in (first, second, third):  # an unkeyed call is made on a partition its node leads, so its reply stays there
        owned = cluster.owned(node)
        for n in range(6):
            status, headers, body = node.call("/Greeter/greet", f"g{n}")
            assert (status, json.loads(body)) == (200, f"Hello g{n}!")
            partition = partition_of(partition_key_of(headers["x-restate-id"]), PARTITIONS)
            assert partition in owned, f"node {node.admin_port} owns {owned}, made the call on {partition}"


def test_failover_after_kill9_loses_nothing_acknowledged(cluster: Cluster) -> None:
    nodes = [cluster.start_node(i) for i in (1, 2, 3)]
    cluster.wait_balanced(nodes)
    nodes[0].register(cluster.service.uri)
    wait_until(lambda: all(http("GET", f"{n.admin}/services/Steps")[0] == 200 for n in nodes), 20, "the registry on every node")
    survivors, victim = nodes[:2], nodes[2]
    accepted: Counter[str] = Counter()
    workflows: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(worker: int) -> None:
        node = survivors[worker % 2]
        i = 0
        while not stop.is_set():
            key = f"key-{(worker * 7 + i) % 40}"
            status, _, body = node.call(f"/Counter/{key}/add/send", 1, timeout_s=60)
            assert status == 202, body
            with lock:
                accepted[key] += 1
            if i % 5 == 0:
                status, _, body = node.call("/Steps/run_steps/send", 3, timeout_s=60)
                assert status == 202, body
                with lock:
                    workflows.append(json.loads(body)["invocationId"])
            i += 1

    def accepted_count() -> int:
        with lock:
            return sum(accepted.values())

    def under_load(count: int, workflow_count: int) -> bool:
        for future in futures:
            if future.done():
                future.result()  # a load thread that failed fails the test now, with its error
        with lock:
            return sum(accepted.values()) >= count and len(workflows) >= workflow_count

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load, w) for w in range(4)]
        wait_until(lambda: under_load(40, 8), 60, "40 sends and 8 workflows accepted before the kill")
        moved = cluster.owned(victim)
        victim.kill9()
        killed_at = time.monotonic()
        wait_until(
            lambda: cluster.owned(survivors[0]) | cluster.owned(survivors[1]) == set(range(PARTITIONS)),
            60,
            "the victim's partitions to move",
        )
        moved_after_s = time.monotonic() - killed_at
        after_move = accepted_count()
        wait_until(lambda: under_load(after_move + 20, 0), 60, "20 more sends accepted after the partitions moved")
        stop.set()
        for future in futures:
            future.result()
    print(f"\nfailover: partitions {sorted(moved)} moved {moved_after_s:.1f} s after kill -9 (session timeout {SESSION_TIMEOUT_MS} ms)")
    assert sum(accepted.values()) > 20 and len(workflows) > 4
    for key, count in accepted.items():
        wait_until(lambda key=key, count=count: counter(survivors[0], key) == count, 60, f"counter {key} to reach {count}")
    for invocation_id in workflows:
        status, _, body = http("GET", f"{survivors[1].ingress}/restate/invocation/{invocation_id}/attach", timeout_s=60)
        assert (status, json.loads(body)) == (200, 3), body
    executions = Counter(line for line in cluster.side_effects.read_text().splitlines() if line.startswith("step "))
    for invocation_id in workflows:
        for step in range(3):
            runs = executions[f"step {invocation_id} {step}"]
            assert 1 <= runs <= 2, f"step {step} of {invocation_id} ran {runs} times"
    repeated = [line for line, runs in executions.items() if runs > 1]
    assert len(repeated) <= 8, f"only steps in flight on the killed node may run again: {repeated}"


def test_a_paused_zombie_cannot_change_state(cluster: Cluster) -> None:
    nodes = [cluster.start_node(i) for i in (1, 2)]
    cluster.wait_balanced(nodes)
    nodes[0].register(cluster.service.uri)
    wait_until(lambda: http("GET", f"{nodes[1].admin}/services/Counter")[0] == 200, 20, "the registry on node 2")
    keys = [f"z{i}" for i in range(12)]
    for key in keys:
        assert nodes[0].call(f"/Counter/{key}/add", 1)[0] == 200
    zombie, healthy = nodes[1], nodes[0]
    assert zombie.process is not None
    os.killpg(zombie.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: cluster.owned(healthy) == set(range(PARTITIONS)), 60, "the zombie's partitions to move")
        for key in keys:
            status, _, body = healthy.call(f"/Counter/{key}/add", 1, timeout_s=60)
            assert (status, json.loads(body)) == (200, 2), body
    finally:
        os.killpg(zombie.process.pid, signal.SIGCONT)
    cluster.wait_balanced(nodes)  # the zombie noticed it lost its partitions and took some back, at a higher epoch
    for key in keys:
        status, _, body = healthy.call(f"/Counter/{key}/add", 1, timeout_s=60)
        assert (status, json.loads(body)) == (200, 3), body
    assert [counter(healthy, key) for key in keys] == [3] * len(keys)
    assert zombie.alive(), "the zombie recovers and rejoins instead of crashing"


def test_a_cold_node_rebuilds_state_from_the_log(cluster: Cluster) -> None:
    first = cluster.start_node(1)
    cluster.wait_balanced([first])
    first.register(cluster.service.uri)
    keys = [f"c{i}" for i in range(10)]
    for i, key in enumerate(keys):
        assert first.call(f"/Counter/{key}/add", i + 1)[0] == 200
    cold = cluster.start_node(4, data_name="cold-node")
    cluster.wait_balanced([first, cold])
    first.kill9()
    wait_until(lambda: cluster.owned(cold) == set(range(PARTITIONS)), 60, "the cold node to own every partition")
    assert [counter(cold, key) for key in keys] == [i + 1 for i in range(len(keys))]


def test_broker_restart_under_load(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    broker = KafkaBroker(tmp_path / "own-broker")
    broker.start()
    cluster = Cluster(tmp_path, broker.bootstrap)
    cluster.service.start()
    try:
        cluster.service.wait_ready()
        node = cluster.start_node(1)
        cluster.wait_balanced([node])
        node.register(cluster.service.uri)
        accepted = 0
        failed = 0
        outage = threading.Event()
        warmed_up = threading.Event()

        def stop_then_restart() -> None:
            if not warmed_up.wait(60):
                return  # the load never got going; the assertions below say so
            broker.stop()
            outage.set()
            time.sleep(10)
            broker.start()

        restarter = threading.Thread(target=stop_then_restart)
        restarter.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline or restarter.is_alive():
            status, _, _ = node.call("/Counter/hot/add/send", 1, timeout_s=120)
            if status == 202:
                accepted += 1
                if accepted >= 20:
                    warmed_up.set()
            else:
                failed += 1
        restarter.join()
        restarted = outage.is_set()
        assert restarted and accepted > 10
        wait_until(lambda: counter(node, "hot") == accepted, 90, f"the counter to reach the {accepted} accepted adds")
        assert node.alive(), "duro recovered without a restart"
        print(f"\nbroker restart: {accepted} adds accepted, {failed} refused while the broker was down")
    finally:
        cluster.stop_all()
        broker.stop()


def _serve_once(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "duro", "serve", "--data-dir", str(tmp / "data"), "--ingress-port", "0", "--admin-port", "0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_an_unreachable_bootstrap_server_is_reported_with_its_address(tmp_path: Path) -> None:
    result = _serve_once(tmp_path, "--log", "kafka", "--kafka-bootstrap", "127.0.0.1:1", env={"DURO_KAFKA_CONNECT_TIMEOUT_MS": "2000"})
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr, result.stderr
    assert result.stderr.count("127.0.0.1:1") >= 2, "each retry is reported, then the failure"


def test_a_topic_with_another_partition_count_is_refused_naming_both(tmp_path: Path, kafka_bootstrap: str) -> None:
    topic = f"duro-test-{uuid.uuid4().hex[:8]}"
    node = DuroServer(
        tmp_path / "first",
        tmp_path / "first.log",
        partitions=4,
        extra_args=["--log", "kafka", "--kafka-bootstrap", kafka_bootstrap, "--kafka-topic", topic],
    )
    node.start()
    node.wait_ready(timeout_s=60)
    node.stop()
    result = _serve_once(tmp_path, "--log", "kafka", "--kafka-bootstrap", kafka_bootstrap, "--kafka-topic", topic, "--partitions", "6")
    assert result.returncode == 1
    assert "4" in result.stderr and "6" in result.stderr and topic in result.stderr, result.stderr


def test_query_on_any_node_sees_every_partition_of_the_cluster(cluster: Cluster) -> None:
    first, second = (cluster.start_node(i) for i in (1, 2))
    cluster.wait_balanced([first, second])
    first.register(cluster.service.uri)
    wait_until(lambda: http("GET", f"{second.admin}/services/Counter")[0] == 200, 20, "the registration to reach node 2")
    keys = [f"q{i}" for i in range(24)]
    for key in keys:
        status, _, body = first.call(f"/Counter/{key}/add", 1)
        assert status == 200, body
    assert cluster.owned(first) and cluster.owned(second), "both nodes run partitions"
    sql = "SELECT service_key FROM state WHERE service_name = 'Counter' AND service_key LIKE 'q%' ORDER BY service_key"
    for node in (first, second):
        status, _, body = http("POST", f"{node.admin}/query", {"query": sql}, {"accept": "application/json"})
        assert status == 200, body
        assert sorted(row["service_key"] for row in json.loads(body)["rows"]) == sorted(keys), f"node {node.admin_port}"
    status, _, body = http(
        "POST", f"{second.admin}/query", {"query": "SELECT COUNT(*) AS n FROM sys_invocation WHERE target_service_name = 'Counter'"},
        {"accept": "application/json"},
    )  # fmt: skip
    assert json.loads(body)["rows"] == [{"n": len(keys)}]
