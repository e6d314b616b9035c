"""The compatibility matrix's fixtures: one (runtime, implementation) pair per module-scoped `deployment`
(module scope, so that no runtime outlives its test module: the real Restate
server's fixed ports must be free for the next module that starts one).

Each pair starts its runtime (duro on the embedded log, or the real Restate
server), starts the implementation's endpoint, registers it, and runs every
scenario. Results are merged into `tests/compat/results/runs/last-run.json`
(git-ignored: a test run leaves the checkout clean); the tracked
`tests/compat/results/last-run.json`, from which the README's table is
rendered, changes only through `python -m tests.compat.matrix --record`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.compat.implementations import IMPLEMENTATIONS, Implementation
from tests.compat.matrix import RUN_RESULTS, merge_into
from tests.processes import DuroServer, ManagedProcess, RestateServer, free_port, wait_until

RUNTIME_ARGS = {"duro": [], "duro-v7": ["--max-protocol-version", "7"]}


@dataclass(frozen=True)
class Pair:
    runtime: str  # "duro" | "duro-v7" (service protocol V7 enabled) | "restate"
    implementation: Implementation

    @property
    def column(self) -> str:
        return f"{self.runtime} / {self.implementation.name}"


def pairs() -> list[Pair]:
    found = [Pair("duro", implementation) for implementation in IMPLEMENTATIONS]
    found += [Pair("duro-v7", implementation) for implementation in IMPLEMENTATIONS if implementation.v7_column]
    found += [Pair("restate", implementation) for implementation in IMPLEMENTATIONS if implementation.on_restate]
    return found


class Deployment:
    """A registered implementation behind a running runtime, as the scenarios see it."""

    def __init__(self, pair: Pair, runtime: DuroServer | RestateServer, side_effects: Path) -> None:
        self.pair = pair
        self.runtime = runtime
        self.side_effects = side_effects
        self.seeds = pair.implementation.seeds

    @property
    def ingress(self) -> str:
        return self.runtime.ingress

    @property
    def admin(self) -> str:
        return self.runtime.admin

    def call(
        self, path: str, body: object = None, headers: dict[str, str] | None = None, timeout_s: float = 30.0
    ) -> tuple[int, dict[str, str], bytes]:
        return self.runtime.call(path, body, headers, timeout_s)

    def side_effect_lines(self, prefix: str) -> list[str]:
        if not self.side_effects.exists():
            return []
        return [line for line in self.side_effects.read_text().splitlines() if line.startswith(prefix)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "deployment" in metafunc.fixturenames:
        found = pairs()
        metafunc.parametrize("deployment", found, ids=[p.column for p in found], indirect=True, scope="module")


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    pair: Pair = request.param
    reason = pair.implementation.skip_reason() or (RestateServer.unavailable_reason() if pair.runtime == "restate" else None)
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("compat")
    side_effects = tmp / "side-effects.log"
    port = free_port()
    endpoint = ManagedProcess(
        pair.implementation.name,
        pair.implementation.argv(port),
        tmp / "service.log",
        {**pair.implementation.env, "DURO_TEST_SIDE_EFFECTS": str(side_effects), "PORT": str(port)},
        cwd=pair.implementation.cwd,
    )
    runtime: DuroServer | RestateServer
    if pair.runtime == "restate":
        runtime = RestateServer(tmp / "restate")
    else:
        runtime = DuroServer(tmp / "data", tmp / "duro.log", extra_args=RUNTIME_ARGS[pair.runtime])
    try:
        endpoint.start()
        runtime.start()
        _wait_listening(endpoint, port)
        if isinstance(runtime, DuroServer):
            runtime.wait_ready()
        runtime.register(f"http://127.0.0.1:{port}", use_http_11=pair.implementation.use_http_11)
        yield Deployment(pair, runtime, side_effects)
    finally:
        runtime.stop()
        endpoint.stop()


def _wait_listening(endpoint: ManagedProcess, port: int) -> None:
    import socket

    def listening() -> bool:
        if not endpoint.alive():
            raise RuntimeError(f"{endpoint.name} exited:\n{endpoint.log_tail()}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(listening, 120, f"{endpoint.name} to listen on {port}")


# ---------------------------------------------------------------- results for the README matrix

_results: dict[str, dict[str, str]] = {}


@functools.cache
def _pair_columns() -> frozenset[str]:
    return frozenset(p.column for p in pairs())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Records the matrix's cells: tests parametrized by a (runtime, implementation) pair; other parametrized tests are not cells."""
    if "tests/compat/" not in report.nodeid or "[" not in report.nodeid:
        return
    scenario, _, column = report.nodeid.split("::")[-1].partition("[")
    column = column.rstrip("]")
    if column not in _pair_columns():
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            _results.setdefault(scenario, {})[column] = f"skipped: {reason.removeprefix('Skipped: ')}"
        else:
            _results.setdefault(scenario, {})[column] = report.outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _results or os.environ.get("DURO_COMPAT_NO_RESULTS"):
        return
    merge_into(RUN_RESULTS, _results, {i.name: i.version for i in IMPLEMENTATIONS})
