"""The runtimes under test, each started fresh in its own run directory: `duro serve` and the real Restate server.

A runtime is created by name through `RUNTIME_FACTORIES` ("duro", "duro-kafka",
"restate", and `duro-wN`: duro with `--workers N`). `duro-kafka` is the hook for duro's Kafka log backend: it passes
`--log kafka`, a topic of its own per run (fresh log, like a fresh data dir)
and the `--duro-arg`/`--duro-env` values given to the harness, e.g.
`--duro-arg=--kafka-bootstrap --duro-arg=127.0.0.1:9092`; the broker is not
started by the harness.
Restate is started only through shared/tools/restate-server/restate-server.sh,
which fixes its ports (8080, 9070, 5122) and wipes its data dir on start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.endpoint import REPO_ROOT, free_port
from duro import __version__ as duro_version

# $DURO_RESTATE_SERVER_SCRIPT (as for the tests), else ../shared/tools/restate-server/restate-server.sh beside the repository
RESTATE_SCRIPT = Path(
    os.environ.get("DURO_RESTATE_SERVER_SCRIPT") or REPO_ROOT.parent / "shared" / "tools" / "restate-server" / "restate-server.sh"
)
RESTATE_PORTS = (8080, 9070, 5122)
HTTP_TIMEOUT_S = 10.0


def http_json(method: str, url: str, body: object = None, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
    """One JSON request; returns (status, decoded body or text) for any status."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"content-type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError) as exc:
            last_error = exc
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}; last error: {last_error!r}")


class Runtime(Protocol):
    """What the harness needs of a runtime: lifecycle, URLs, the pid whose process tree it accounts."""

    name: str

    @property
    def ingress_url(self) -> str: ...

    @property
    def admin_url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def root_pid(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...


def register(runtime: Runtime, uri: str, use_http_11: bool) -> None:
    status, body = http_json("POST", f"{runtime.admin_url}/deployments", {"uri": uri, "use_http_11": use_http_11, "force": True})
    if status not in (200, 201):
        raise RuntimeError(f"registering {uri} at {runtime.name} failed with HTTP {status}: {body}")


def runtime_version(runtime: Runtime) -> str:
    try:
        status, body = http_json("GET", f"{runtime.admin_url}/version", timeout_s=5)
    except OSError as exc:
        return f"unknown ({exc})"
    return str(body.get("version")) if status == 200 and isinstance(body, dict) else f"unknown (HTTP {status})"


@dataclass
class DuroRuntime:
    """`python -m duro serve` on free ports, data in `run_dir/data`."""

    run_dir: Path
    partitions: int = 24
    log_backend: str = "embedded"
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 30.0
    name: str = "duro"
    command_prefix: Sequence[str] = ()  # e.g. valgrind's, to count the node's instructions (benchmarks/cpu_cost.py)
    python_args: Sequence[str] = ()  # between the interpreter and `-m duro`, e.g. `-m cProfile -o FILE`

    def __post_init__(self) -> None:
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_args = self._log_args()
        args = [
            *self.command_prefix, sys.executable, *self.python_args, "-m", "duro", "serve",
            "--data-dir", str(self.run_dir / "data"),
            "--ingress-port", str(self.ingress_port),
            "--admin-port", str(self.admin_port),
            "--partitions", str(self.partitions),
            "--log-level", "warning",
            *log_args, *self.extra_args,
        ]  # fmt: skip
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(self.run_dir / "duro.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, start_new_session=True)
        wait_for(self._ready, self.start_timeout_s, f"duro to be ready (log: {self.run_dir / 'duro.log'})")

    def _log_args(self) -> list[str]:
        """`--log` for a non-default backend; a Kafka run gets a topic of its own unless one is given."""
        if self.log_backend == "embedded":
            return []
        args = ["--log", self.log_backend]
        if self.log_backend == "kafka" and "--kafka-topic" not in self.extra_args:
            args += ["--kafka-topic", f"duro.bench.{self.run_dir.name}.{uuid.uuid4().hex[:8]}"]
        return args

    def _ready(self) -> bool:
        assert self.process is not None, "duro not started"
        if self.process.poll() is not None:
            tail = (self.run_dir / "duro.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"duro exited with {self.process.returncode}:\n{tail}")
        return (
            http_json("GET", f"{self.ingress_url}/restate/health", timeout_s=2)[0] == 200
            and http_json("GET", f"{self.admin_url}/health", timeout_s=2)[0] == 200
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=self.stop_timeout_s)

    def root_pid(self) -> int:
        assert self.process is not None, "duro not started"
        return self.process.pid

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "version": f"{duro_version} (admin /version answers {runtime_version(self)})",
            "log_backend": self.log_backend,
            "partitions": self.partitions,
            "durability": "embedded log: every append is fsynced (group commit) before it is acknowledged"
            if self.log_backend == "embedded"
            else f"log backend {self.log_backend}",
            "extra_args": list(self.extra_args),
        }


@dataclass
class RestateRuntime:
    """The real Restate server through restate-server.sh; waits (bounded) for its fixed ports to be free."""

    run_dir: Path
    script: Path = RESTATE_SCRIPT
    port_wait_s: float = 300.0
    start_timeout_s: float = 300.0
    name: str = "restate"

    @property
    def ingress_url(self) -> str:
        return "http://127.0.0.1:8080"

    @property
    def admin_url(self) -> str:
        return "http://127.0.0.1:9070"

    def start(self) -> None:
        if not self.script.exists():
            raise FileNotFoundError(f"{self.script} not found: the Restate runtime is started only through it")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        wait_for(_ports_free, self.port_wait_s, f"ports {RESTATE_PORTS} to be free (another Restate server is running)", interval_s=1.0)
        result = subprocess.run(
            ["bash", str(self.script), "start", str(self.run_dir)],
            check=False,
            capture_output=True,
            text=True,
            timeout=self.start_timeout_s,
        )
        if result.returncode != 0:
            raise RuntimeError(f"restate-server.sh start failed: {result.stdout}{result.stderr}")

    def stop(self) -> None:
        subprocess.run(["bash", str(self.script), "stop", str(self.run_dir)], check=False, capture_output=True, text=True, timeout=60)

    def root_pid(self) -> int:
        return int((self.run_dir / "server.pid").read_text().strip())

    def describe(self) -> dict[str, Any]:
        overrides = {key: value for key, value in os.environ.items() if key.startswith("RESTATE_")}
        return {
            "runtime": self.name,
            "version": runtime_version(self),
            "partitions": "24 (Restate's default-num-partitions)",
            "durability": (
                "Restate defaults: bifrost default-provider = replicated (one node here); the log-server's RocksDB WAL"
                " is on and fsynced on every write batch (log-server.rocksdb-disable-wal-fsync = false);"
                " restate.toml of the script overrides none of this"
            ),
            "restate_env_overrides": overrides,
        }


def _ports_free() -> bool:
    for port in RESTATE_PORTS:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


@dataclass(frozen=True)
class RuntimeOptions:
    """Options the harness passes to every runtime factory."""

    partitions: int = 24
    duro_args: Sequence[str] = ()
    duro_env: Mapping[str, str] = field(default_factory=dict)
    restate_port_wait_s: float = 300.0


RuntimeFactory = Callable[[Path, RuntimeOptions], Runtime]

RUNTIME_FACTORIES: dict[str, RuntimeFactory] = {
    "duro": lambda run_dir, options: DuroRuntime(run_dir, options.partitions, "embedded", options.duro_args, options.duro_env),
    "duro-kafka": lambda run_dir, options: DuroRuntime(
        run_dir, options.partitions, "kafka", options.duro_args, options.duro_env, name="duro-kafka"
    ),
    "restate": lambda run_dir, options: RestateRuntime(run_dir, port_wait_s=options.restate_port_wait_s),
}


WORKERS_RUNTIME = re.compile(r"duro-w([1-9][0-9]*)")
"""`duro-wN`: duro on the embedded log with `--workers N`, so that two worker counts run side by side (`--reference duro-w1`)."""


def is_runtime_name(name: str) -> bool:
    return name in RUNTIME_FACTORIES or WORKERS_RUNTIME.fullmatch(name) is not None


def create_runtime(name: str, run_dir: Path, options: RuntimeOptions) -> Runtime:
    workers = WORKERS_RUNTIME.fullmatch(name)
    if workers is not None:
        args = ("--workers", workers.group(1), *options.duro_args)
        return DuroRuntime(run_dir, options.partitions, "embedded", args, options.duro_env, name=name)
    if name not in RUNTIME_FACTORIES:
        raise ValueError(f"unknown runtime {name!r}; expected one of {sorted(RUNTIME_FACTORIES)} or duro-wN")
    return RUNTIME_FACTORIES[name](run_dir, options)
