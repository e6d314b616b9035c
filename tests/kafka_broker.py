"""A real Apache Kafka broker for tests, run through `scripts/kafka` (one KRaft node on 127.0.0.1 in a directory of the test's)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.processes import REPO_ROOT, free_port

KAFKA_SCRIPT = REPO_ROOT / "scripts" / "kafka"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def unavailable_reason() -> str | None:
    """Why no broker can be started here (not fetched), or None when it can."""
    result = subprocess.run(["bash", str(KAFKA_SCRIPT), "libs"], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        return f"the Kafka broker is not fetched ({result.stderr.strip()}); scripts/setup fetches it"
    return None


class KafkaBroker:
    """One broker in `directory` on `port` (a free one by default); `restart` keeps its data and port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and return once it serves; raises with the end of its log if it does not."""
        self._run("start", str(self.directory), str(self.port), timeout_s=START_TIMEOUT_S)

    def stop(self) -> None:
        self._run("stop", str(self.directory), timeout_s=STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.directory / "kafka.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _run(self, *args: str, timeout_s: float) -> None:
        result = subprocess.run(["bash", str(KAFKA_SCRIPT), *args], capture_output=True, text=True, timeout=timeout_s, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/kafka {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}\n--- kafka.log ---\n{self.log_tail()}"
            )
