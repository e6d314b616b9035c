"""A node of two worker processes (`--workers 2`): one node to its clients, and a killed worker comes back without losing anything.

Real processes throughout: `duro serve --workers 2` (a supervisor and two
workers sharing the ingress and admin ports with SO_REUSEPORT), the official
Python SDK's test services, kill -9 of one worker while clients keep adding.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from duro.worker_log import owner_of
from protocol.routing import partition_key_for_key, partition_key_of
from tests.processes import DuroServer, ServiceEndpoint, http, wait_until
from wal.partitioner import partition_of

KEYS = 12  # on 4 partitions: keys of both workers' partitions


def _worker_pids(server: DuroServer) -> dict[int, int]:
    """Worker index -> pid of the latest start, read from the supervisor's log lines."""
    pids: dict[int, int] = {}
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "duro.supervisor: worker " in line and " started (pid " in line:
            index = int(line.split("duro.supervisor: worker ", 1)[1].split()[0])
            pids[index] = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
    return pids


def _outcome(status: int, body: bytes) -> str:
    """What an add's answer says of it: a 503 counts as not done only if it says the request was not recorded, else it may have run."""
    if status != 503:
        return str(status)
    return "503 not recorded" if b"was not recorded" in body or b"nothing was recorded" in body else "503 unknown"


def _count(server: DuroServer, key: str) -> int:
    status, _, body = server.call(f"/Counter/{key}/get")
    assert status == 200, body
    return int(body)


def test_two_workers_serve_as_one_node(tmp_path: Path, official_python_service: ServiceEndpoint) -> None:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=4, workers=2)
    with server.serving(official_python_service):
        assert set(_worker_pids(server)) == {0, 1}
        for round_ in range(3):
            for key in range(KEYS):
                status, _, body = server.call(f"/Counter/w{key}/add", 1)
                assert (status, int(body)) == (200, round_ + 1), f"key w{key}, round {round_}: {status} {body!r}"
        # The deployment registered through one worker is known to both, every call above found it.
        status, _, body = http(
            "POST", f"{server.admin}/query", {"query": "SELECT target_service_key FROM sys_invocation WHERE target_handler_name = 'add'"},
            headers={"accept": "application/json"},
        )  # fmt: skip
        assert status == 200, body
        keys = Counter(row["target_service_key"] for row in json.loads(body)["rows"])
        assert keys == {f"w{key}": 3 for key in range(KEYS)}, "the query sees the invocations of both workers' partitions"
        metrics = http("GET", f"{server.admin}/metrics")[2].decode()
        completed = {
            line.split('worker="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("duro_invocations_total{") and 'handler="add"' in line and "succeeded" in line
        }
        assert set(completed) == {"0", "1"} and sum(completed.values()) == 3 * KEYS, completed
        assert (tmp_path / "data" / "workers" / "0" / "log").is_dir() and (tmp_path / "data" / "workers" / "1" / "state").is_dir()
        supervisor = server.process
        assert supervisor is not None
        pids = _worker_pids(server)
    assert supervisor.returncode == 0, server.log_tail()
    for pid in pids.values():
        wait_until(lambda pid=pid: not _alive(pid), 10, f"worker {pid} to end with its node")


def test_unkeyed_calls_stay_on_the_worker_that_took_them_while_a_keyed_call_crosses(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    """Fresh unkeyed invocations are made on the partitions of the worker whose ingress took the connection: no link appends."""
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=4, workers=2)
    with server.serving(official_python_service):
        assert _samples(server, "duro_worker_link_appends_total") == {("0", "1"): 0.0, ("1", "0"): 0.0}, "each worker's link"
        partitions: Counter[int] = Counter()
        for n in range(40):
            status, headers, body = server.call("/Greeter/greet", f"u{n}")
            assert (status, json.loads(body)) == (200, f"Hello u{n}!")
            partitions[partition_of(partition_key_of(headers["x-restate-id"]), 4)] += 1
            status, headers, _ = server.call("/Greeter/greet/send", f"s{n}")
            assert status == 202
            partitions[partition_of(partition_key_of(headers["x-restate-id"]), 4)] += 1
        for _ in range(10):
            status, headers, body = server.call("/Steps/run_steps", 2)
            assert (status, body) == (200, b"1")
            partitions[partition_of(partition_key_of(headers["x-restate-id"]), 4)] += 1
        taken = {
            worker: count for (worker, kind), count in _samples(server, "duro_ingress_requests_total", "kind").items() if kind == "call"
        }
        assert set(taken) == {"0", "1"} and all(taken.values()), f"both workers' ingress took calls: {taken}"
        assert set(partitions) == {0, 1, 2, 3}, f"unkeyed invocations spread over every partition: {partitions}"
        wait_until(lambda: _greeted(server) == 80, 60, "the 40 sends to run")
        assert sum(_samples(server, "duro_worker_link_appends_total").values()) == 0, "no unkeyed call or send crossed"
        keys = [f"x{n}" for n in range(KEYS)]
        assert {owner_of(partition_of(partition_key_for_key(key), 4), 2) for key in keys} == {0, 1}
        for key in keys * 2:
            assert server.call(f"/Counter/{key}/add", 1)[0] == 200
        crossed = sum(_samples(server, "duro_worker_link_appends_total").values())
        assert crossed > 0, "a keyed call taken by the worker not owning its key's partition crosses to the owner"


def _samples(server: DuroServer, name: str, label: str | None = None) -> dict[tuple[str, ...], float]:
    """The samples of `name` in the node's /metrics: (worker, `label` or the link's owner) -> value."""
    text = http("GET", f"{server.admin}/metrics")[2].decode()
    found: dict[tuple[str, ...], float] = {}
    other = label or "owner"
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(part.split("=", 1) for part in line[len(name) + 1 : line.index("}")].split(","))
            key = (labels["worker"].strip('"'), labels[other].strip('"'))
            found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def _greeted(server: DuroServer) -> float:
    """Succeeded `greet` invocations of the node."""
    metrics = http("GET", f"{server.admin}/metrics")[2].decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("duro_invocations_total{") and 'handler="greet"' in line and 'status="succeeded"' in line
    )


def test_a_killed_worker_is_restarted_and_every_acknowledged_add_counts_once(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=4, workers=2)
    acknowledged: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    answers: Counter[str] = Counter()  # the bodies of answers other than 200, for the failure message
    counting = threading.Lock()  # four clients count: a Counter's first += of a key runs Python code (__missing__) and can lose one
    stop = threading.Event()
    killed_at: list[float] = []
    served_while_down: list[str] = []

    def client(number: int) -> None:
        while not stop.is_set():
            for key in range(KEYS):
                name = f"k{key}"
                try:
                    status, _, body = server.call(f"/Counter/{name}/add", 1, timeout_s=10)
                except OSError:
                    with counting:
                        outcomes["connection error"] += 1  # the killed worker's connections: the add may or may not have run
                    continue
                while_down = bool(killed_at) and status == 200 and not _worker_back(server)
                with counting:
                    outcomes[_outcome(status, body)] += 1
                    if status != 200:
                        answers[f"{status} {body[:160].decode(errors='replace')}"] += 1
                    if status == 200:
                        acknowledged[name] += 1
                    if while_down:
                        served_while_down.append(name)

    with server.serving(official_python_service):
        pids = _worker_pids(server)
        clients = [threading.Thread(target=client, args=(number,)) for number in range(4)]
        for thread in clients:
            thread.start()
        try:
            wait_until(lambda: sum(acknowledged.values()) >= 40, 60, "adds before the kill")
            os.kill(pids[1], signal.SIGKILL)
            killed_at.append(time.monotonic())
            wait_until(lambda: _worker_pids(server)[1] != pids[1], 30, "the supervisor to restart worker 1")
            server.wait_ready()
            after_restart = sum(acknowledged.values())
            wait_until(lambda: sum(acknowledged.values()) >= after_restart + 40, 60, "adds after the restart")
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=30)
        assert served_while_down, "worker 0 kept serving its partitions while worker 1 was down"
        assert "worker 1 of node 1 was ended by SIGKILL" in server.log_path.read_text()
        # Every acknowledged add is in the counter exactly once; an add answered 503 saying it was not recorded did not run, and
        # one whose connection broke or whose 503 says nothing so sure may or may not have: so each counter is at least its
        # acknowledged adds, at most one more per break.
        breaks = outcomes["connection error"] + outcomes["503 unknown"]
        for key in range(KEYS):
            name = f"k{key}"
            assert acknowledged[name] <= _count(server, name) <= acknowledged[name] + breaks, (name, outcomes, answers)
        assert set(outcomes) <= {"200", "503 not recorded", "503 unknown", "connection error"}, (outcomes, answers)


def test_calls_to_a_restarting_worker_wait_in_the_senders_outbox_and_run_once_it_is_back(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    # The supervisor waits 3 s (not 100 ms) before it restarts the killed worker, so the sends below fall in its absence
    # even when a busy machine slows them down.
    restart_pause = {"DURO_WORKER__RESTART_INITIAL_BACKOFF_MS": "3000"}
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=4, workers=2, env=restart_pause)
    key = next(f"o{n}" for n in range(100) if owner_of(partition_of(partition_key_for_key(f"o{n}"), 4), 2) == 1)
    with server.serving(official_python_service):
        pids = _worker_pids(server)
        os.kill(pids[1], signal.SIGKILL)
        accepted = 0
        while accepted < 3:  # each send lands on a partition of worker 0 (worker 1's answer 503 or refuse the connection)
            try:
                status = server.call("/Steps/call_counter/send", key, timeout_s=10)[0]
            except OSError:
                continue
            assert status in (202, 503), status
            accepted += status == 202
        assert not _worker_back(server), "worker 1 came back before the sends: the outbox path was not exercised"
        wait_until(lambda: _worker_pids(server)[1] != pids[1], 60, "the supervisor to restart worker 1")
        server.wait_ready()
        wait_until(lambda: _count(server, key) >= accepted, 60, f"the {accepted} calls to reach {key}")
        assert _count(server, key) == accepted
        text = server.log_path.read_text(errors="replace")
        assert "not delivered" in text and "trying again" in text, "the outbox was refused by the restarting worker and tried again"
        assert "task died" not in text, "no partition stepped down over it"


def test_kill9_of_the_node_ends_every_worker_and_a_restart_keeps_every_acknowledged_add(
    tmp_path: Path, official_python_service: ServiceEndpoint
) -> None:
    first = DuroServer(tmp_path / "data", tmp_path / "first.log", partitions=4, workers=2)
    with first.serving(official_python_service):
        for key in range(KEYS):
            for _ in range(2):
                assert first.call(f"/Counter/n{key}/add", 1)[0] == 200
        workers = _worker_pids(first)
        first.kill9()  # SIGKILL to the supervisor's process group; its workers die with it (PR_SET_PDEATHSIG)
    for pid in workers.values():
        wait_until(lambda pid=pid: not _alive(pid), 10, f"worker {pid} to die with its node")
    again = DuroServer(tmp_path / "data", tmp_path / "again.log", partitions=4, workers=None)  # the data dir says two workers
    with again.serving(official_python_service):
        _wait_logged(again, "in 2 workers")  # the supervisor logs it once every worker said ready: a moment after they answer
        for key in range(KEYS):
            status, _, body = again.call(f"/Counter/n{key}/add", 1)
            assert (status, int(body)) == (200, 3), f"key n{key}: {status} {body!r}"


def test_the_worker_count_is_fixed_with_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DuroServer(data, tmp_path / "first.log", partitions=4, workers=2)
    first.start()
    try:
        first.wait_ready()
    finally:
        assert first.stop(signal.SIGTERM) == 0, first.log_tail()
    assert json.loads((data / "duro.json").read_text())["workers"] == 2
    other = DuroServer(data, tmp_path / "other.log", partitions=4, workers=3)
    other.start()
    assert other.process is not None and other.process.wait(timeout=60) == 1
    assert "was created with --workers 2, not 3" in other.log_tail()
    again = DuroServer(data, tmp_path / "again.log", partitions=4, workers=None)  # unset: the data dir's count
    again.start()
    try:
        again.wait_ready()
        _wait_logged(again, "in 2 workers")  # the supervisor logs it once every worker said ready: a moment after they answer
    finally:
        again.stop(signal.SIGTERM)


def test_one_worker_is_a_node_in_one_process_as_before(tmp_path: Path) -> None:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=4, workers=1)
    server.start()
    try:
        server.wait_ready()
        assert (tmp_path / "data" / "log").is_dir() and not (tmp_path / "data" / "workers").exists()
        assert "duro.supervisor" not in server.log_tail()
    finally:
        server.stop()


def _wait_logged(server: DuroServer, text: str) -> None:
    wait_until(lambda: text in server.log_path.read_text(errors="replace"), 30, f"{text!r} in the node's log")


def _worker_back(server: DuroServer) -> bool:
    try:
        return http("GET", f"{server.ingress}/restate/health", timeout_s=2)[0] == 200
    except OSError:  # a connection the killed worker had accepted
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


pytestmark = pytest.mark.timeout(300)
