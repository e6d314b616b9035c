"""Real processes for end-to-end tests: `duro serve`, service endpoints under hypercorn, and their lifecycles.

Every process logs to a file in the test's directory; on failure the tail of
the log is part of the error. Waits are bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 30.0


# Ports for test servers come from below Linux's ephemeral range (32768-60999 by
# default): a port the kernel picks for bind(0) can meanwhile become the source
# port of an outgoing connection (Kafka clients open many), and the server that
# was meant to get it then fails with "address already in use".
_TEST_PORTS = list(range(20_000, 32_000))
random.shuffle(_TEST_PORTS)


def free_port() -> int:
    """A port nothing listens on, from a range outgoing connections do not use; never the same twice in a run."""
    while _TEST_PORTS:
        port = _TEST_PORTS.pop()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free test port left in 20000-31999")


def http(
    method: str,
    url: str,
    body: bytes | dict | list | str | int | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request; returns (status, headers, body) for any status."""
    data: bytes | None
    all_headers = dict(headers or {})
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
        all_headers.setdefault("content-type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}; last error: {last_error!r}")


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    cwd: Path = REPO_ROOT
    file_descriptor_limit: int | None = None  # soft and hard RLIMIT_NOFILE of the process, like `ulimit -n` before starting it

    def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held open for the process's life, closed in stop()
        limit = self.file_descriptor_limit

        def limit_descriptors() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.process = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=limit_descriptors if limit is not None else None,
        )

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        try:
            os.killpg(self.process.pid, sig)
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)
        finally:
            self._log.close()


class DuroServer(ManagedProcess):
    """`duro serve` on free ports with its own data dir.

    `workers` worker processes (None: leave --workers unset, so the data dir's or the machine's count applies), one by
    default: these tests look at one process and at its data dir's layout; `tests/e2e/test_workers.py` runs nodes of
    several workers, the default of `duro serve` on a machine with several cores.
    """

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        partitions: int = 4,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        workers: int | None = 1,
    ) -> None:
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.data_dir = data_dir
        extra = list(extra_args or [])
        if workers is not None and "--workers" not in extra and "DURO_WORKERS" not in (env or {}):
            extra = ["--workers", str(workers), *extra]
        args = [
            sys.executable, "-m", "duro", "serve",
            "--data-dir", str(data_dir),
            "--ingress-port", str(self.ingress_port),
            "--admin-port", str(self.admin_port),
            "--partitions", str(partitions),
            *extra,
        ]  # fmt: skip
        super().__init__("duro", args, log_path, env or {})

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"duro exited with {self.process.returncode if self.process else None}:\n{self.log_tail()}")
            return (
                http("GET", f"{self.ingress}/restate/health", timeout_s=2)[0] == 200
                and http("GET", f"{self.admin}/health", timeout_s=2)[0] == 200
            )

        try:
            wait_until(ready, timeout_s, "duro to be ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- duro log ---\n{self.log_tail()}") from None

    def register(self, uri: str, use_http_11: bool = False, force: bool = False) -> dict:
        status, _, body = http("POST", f"{self.admin}/deployments", {"uri": uri, "use_http_11": use_http_11, "force": force})
        assert status in (200, 201), f"registering {uri} failed with {status}: {body.decode(errors='replace')}\n{self.log_tail()}"
        return json.loads(body)

    @contextlib.contextmanager
    def serving(self, *endpoints: ServiceEndpoint) -> Iterator[DuroServer]:
        """Start, wait until ready, register `endpoints`; stop on exit."""
        self.start()
        try:
            self.wait_ready()
            for endpoint in endpoints:
                self.register(endpoint.uri)
            yield self
        finally:
            self.stop()

    def call(
        self, path: str, body: object = None, headers: dict[str, str] | None = None, timeout_s: float = 30.0
    ) -> tuple[int, dict[str, str], bytes]:
        return http("POST", f"{self.ingress}{path}", body, headers, timeout_s)


class ServiceEndpoint(ManagedProcess):
    """An SDK endpoint (ASGI app) served by hypercorn on a free port."""

    def __init__(self, app: str, log_path: Path, env: dict[str, str] | None = None, extra_args: list[str] | None = None) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tests.services.serve", app, "--port", str(self.port), *(extra_args or [])]
        super().__init__(app, args, log_path, env or {})

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_until(ready, timeout_s, f"{self.name} to listen on {self.port}")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


RESTATE_SCRIPT_VARIABLE = "DURO_RESTATE_SERVER_SCRIPT"
RESTATE_SCRIPT_DEFAULT = REPO_ROOT.parent / "shared" / "tools" / "restate-server" / "restate-server.sh"
RESTATE_UNAVAILABLE = "the real Restate server is unavailable"  # every skip for want of it starts so; tests/conftest.py counts them


def restate_script() -> Path:
    """The script that starts and stops the real Restate server: $DURO_RESTATE_SERVER_SCRIPT, else ../shared/tools/restate-server/restate-server.sh beside the repository."""
    configured = os.environ.get(RESTATE_SCRIPT_VARIABLE, "")
    return Path(configured).expanduser().resolve() if configured else RESTATE_SCRIPT_DEFAULT


class RestateServer:
    """The real Restate server, started only through restate-server.sh (see restate_script(); fixed ports 8080/9070)."""

    ingress = "http://127.0.0.1:8080"
    admin = "http://127.0.0.1:9070"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why tests needing the server must skip (a sentence starting with RESTATE_UNAVAILABLE), or None when its script is there."""
        script = restate_script()
        if not script.is_file():
            return f"{RESTATE_UNAVAILABLE}: {script} not found (set {RESTATE_SCRIPT_VARIABLE} to its restate-server.sh)"
        return None

    def start(self, ports_free_timeout_s: float = 120.0) -> None:
        """Start the server; first wait (bounded) for its fixed ports to be free, e.g. while a previous one stops."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        wait_until(
            lambda: not any(_listening(port) for port in (8080, 9070, 5122)),
            ports_free_timeout_s,
            "Restate's ports 8080, 9070 and 5122 to be free",
        )
        result = subprocess.run(["bash", str(restate_script()), "start", str(self.run_dir)], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"restate-server.sh start failed: {result.stdout}{result.stderr}\n{self.log_tail()}")

    def stop(self) -> None:
        subprocess.run(["bash", str(restate_script()), "stop", str(self.run_dir)], capture_output=True, text=True, timeout=60)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join((self.run_dir / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def register(self, uri: str, use_http_11: bool = False, force: bool = False) -> dict:
        status, _, body = http("POST", f"{self.admin}/deployments", {"uri": uri, "use_http_11": use_http_11, "force": force})
        assert status in (200, 201), f"registering {uri} at Restate failed with {status}: {body.decode(errors='replace')}"
        return json.loads(body)

    def call(
        self, path: str, body: object = None, headers: dict[str, str] | None = None, timeout_s: float = 30.0
    ) -> tuple[int, dict[str, str], bytes]:
        return http("POST", f"{self.ingress}{path}", body, headers, timeout_s)
