"""The benchmark services' endpoint: hypercorn serving `benchmarks.services` on one SDK, and a handle to run it as a process.

`python -m benchmarks.endpoint --sdk official --port 9080` serves HTTP/2
cleartext (prior knowledge) and HTTP/1.1 on one port. `--sdk typescript` is
the cheap endpoint: the same services on the official TypeScript SDK under
Node (`tests/compat/typescript/src/bench_endpoint.ts`, compiled by
`scripts/setup.d/20-typescript.sh`), which costs far less CPU per request than
a Python SDK, so that the runtime under test sets the pace. Keep-alive settings
follow shared/tools/restate-server/hypercorn.toml: hypercorn's default of 1000
requests per connection makes it send GOAWAY while a stream is in flight, and
its 5 s idle timeout races the runtimes' connection reuse. Stop it with SIGINT
(the official SDK installs its own SIGTERM handler).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.services import SDK_MODULES

REPO_ROOT = Path(__file__).resolve().parent.parent
TYPESCRIPT_ENDPOINT = REPO_ROOT / "tests" / "compat" / "typescript" / "dist" / "bench_endpoint.js"
NODE_ENDPOINTS = {"typescript": TYPESCRIPT_ENDPOINT}
SDK_NAMES = (*SDK_MODULES, *NODE_ENDPOINTS)
MAX_KEEP_ALIVE_REQUESTS = 2_147_483_647
KEEP_ALIVE_TIMEOUT_S = 300
GRACEFUL_TIMEOUT_S = 3
MAX_H2_CONCURRENT_STREAMS = 1000


def serve(sdk_name: str, port: int, bind: str = "127.0.0.1") -> None:
    import hypercorn.asyncio
    import hypercorn.config

    from benchmarks.services import build_app

    config = hypercorn.config.Config()
    config.bind = [f"{bind}:{port}"]
    config.keep_alive_max_requests = MAX_KEEP_ALIVE_REQUESTS
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.h2_max_concurrent_streams = MAX_H2_CONCURRENT_STREAMS
    config.loglevel = "WARNING"
    config.accesslog = None
    asyncio.run(hypercorn.asyncio.serve(build_app(sdk_name), config))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EndpointProcess:
    """`python -m benchmarks.endpoint` as a child process on a free port, logging to `log_path`."""

    def __init__(self, sdk_name: str, log_path: Path, start_timeout_s: float = 30.0, env: dict[str, str] | None = None) -> None:
        if sdk_name not in SDK_NAMES:
            raise ValueError(f"unknown SDK {sdk_name!r}; expected one of {sorted(SDK_NAMES)}")
        self.sdk_name = sdk_name
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "endpoint not started"
        return self.process.pid

    def _command(self) -> tuple[list[str], dict[str, str]]:
        """The endpoint's command line and extra environment."""
        script = NODE_ENDPOINTS.get(self.sdk_name)
        if script is None:
            return [sys.executable, "-m", "benchmarks.endpoint", "--sdk", self.sdk_name, "--port", str(self.port)], {}
        if not script.exists():
            raise FileNotFoundError(f"{script} is missing: run scripts/setup.d/20-typescript.sh (needs Node.js >= 20 and npm)")
        node = shutil.which("node")
        if node is None:
            raise FileNotFoundError("node is not on PATH: the typescript endpoint runs on Node.js >= 20")
        return [node, str(script), "--port", str(self.port)], {"RESTATE_LOGGING": "WARN"}  # no log line per invocation

    def start(self) -> None:
        args, env = self._command()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={**os.environ, **env, **self.env, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"endpoint exited with {self.process.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"endpoint did not listen on port {self.port} within {self.start_timeout_s} s; see {self.log_path}")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.endpoint", description="Serve the benchmark services with hypercorn.")
    parser.add_argument("--sdk", choices=sorted(SDK_MODULES), default="official", help="which SDK implements the services")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args(argv)
    serve(args.sdk, args.port, args.bind)


if __name__ == "__main__":
    main()
