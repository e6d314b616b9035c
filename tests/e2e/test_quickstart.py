"""The README's quick start as a new user follows it: `scripts/quickstart` runs, and every README command meant for it answers as printed.

The commands are those of the README's ```console blocks marked
`<!-- readme-test: quick start -->`: a line starting with `$ ` is a command
(lines ending in a backslash continue it), the lines after it are its expected
output, where `…` stands for anything (ids, times). They run in order in one
bash, so a variable set by one is there for the next, with the working
directory holding the quick start's `.quickstart/` and `duro-data/`, as in a
checkout. Two things differ from a user's run, because a test needs them:
- the quick start listens on free ports, and the commands' 8080, 9070 and 9080
  are replaced by them;
- DURO_QUICKSTART_SKIP_INSTALL=1: the test's Python already has duro's
  dependencies. The install into `.venv` is timed by hand from a fresh clone
  (the README states the time); a test would spend a minute on the network.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from tests.processes import REPO_ROOT, free_port, wait_until

MARKER = "<!-- readme-test: quick start -->"
README_PORTS = {"localhost:8080": "DURO_INGRESS_PORT", "localhost:9070": "DURO_ADMIN_PORT", "127.0.0.1:9080": "DURO_EXAMPLES_PORT"}
READY_TIMEOUT_S = 90
COMMAND_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


@dataclass
class Example:
    """One README command and the output it should print."""

    command: str
    expected: list[str] = field(default_factory=list)

    def matches(self, output: str) -> bool:
        pattern = ".*?".join(re.escape(part) for part in "\n".join(self.expected).split("…"))
        return re.fullmatch(pattern, output.strip(), re.DOTALL) is not None


def readme_examples(text: str) -> list[Example]:
    """The commands of the README's marked console blocks, in order."""
    examples: list[Example] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        assert lines[index + 1].strip() == "```console", f"README line {index + 2}: {MARKER} must stand right before a ```console block"
        block = []
        for block_line in lines[index + 2 :]:
            if block_line.strip() == "```":
                break
            block.append(block_line)
        examples.extend(_console_examples(block))
    return examples


def _console_examples(block: list[str]) -> list[Example]:
    examples: list[Example] = []
    continuing = False
    for line in block:
        if continuing:
            examples[-1].command += "\n" + line
        elif line.startswith("$ "):
            examples.append(Example(line[2:]))
        else:
            assert examples, f"console block output before any command: {line!r}"
            examples[-1].expected.append(line)
        continuing = line.endswith("\\")
    return examples


class Shell:
    """One bash that runs commands in order and returns what each printed on stdout (stderr goes to a file)."""

    def __init__(self, cwd: Path, environment: dict[str, str]) -> None:
        self.stderr_path = cwd / "shell-stderr.log"
        self._process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=environment, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"),  # noqa: SIM115 (the shell holds it open)
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)

    def run(self, command: str) -> tuple[int, str]:
        assert self._process.stdin is not None
        marker = f"@@{uuid.uuid4().hex}@@"
        self._process.stdin.write(f"{command}\nprintf '\\n{marker} %s\\n' \"$?\"\n")
        self._process.stdin.flush()
        output: list[str] = []
        while True:
            line = self._lines.get(timeout=COMMAND_TIMEOUT_S)
            if line.startswith(marker):
                return int(line.split()[1]), "".join(output)
            output.append(line)

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)


@dataclass
class QuickStart:
    process: subprocess.Popen[str]
    directory: Path
    environment: dict[str, str]
    output: list[str]

    def port(self, variable: str) -> int:
        return int(self.environment[variable])

    def text(self) -> str:
        return "".join(self.output)


def _collect(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)


def start_quickstart(directory: Path, environment: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        ["bash", "scripts/quickstart"], cwd=REPO_ROOT, env=environment, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    threading.Thread(target=_collect, args=(process.stdout, output), daemon=True).start()
    return process, output


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStart]:
    directory = tmp_path_factory.mktemp("quickstart")
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the wrapper finds this Python first
        "PYTHONPATH": str(REPO_ROOT),
        "DURO_QUICKSTART_SKIP_INSTALL": "1",
        "DURO_QUICKSTART_DIR": str(directory / ".quickstart"),
        "DURO_DATA_DIR": str(directory / "duro-data"),
        **{variable: str(free_port()) for variable in README_PORTS.values()},
    }
    process, output = start_quickstart(directory, environment)
    running = QuickStart(process, directory, environment, output)
    try:
        wait_until(lambda: "duro is ready" in running.text() or process.poll() is not None, READY_TIMEOUT_S, "the quick start to be ready")
        assert process.poll() is None, f"the quick start ended with {process.returncode}:\n{running.text()}"
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        process.wait(STOP_TIMEOUT_S)


def test_readme_commands_answer_as_printed(quickstart: QuickStart) -> None:
    examples = readme_examples((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(examples) >= 10, f"the README's marked blocks hold too few commands: {examples}"
    shell = Shell(quickstart.directory, quickstart.environment)
    examples_log = quickstart.directory / ".quickstart" / "examples.log"
    try:
        for example in examples:
            command = example.command
            for readme_port, variable in README_PORTS.items():
                command = command.replace(readme_port, f"{readme_port.split(':')[0]}:{quickstart.port(variable)}")
            used_ports = {int(port) for port in re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)", command)}
            assert used_ports <= {quickstart.port(variable) for variable in README_PORTS.values()}, (
                f"a README command uses a port the quick start does not run: {example.command}"
            )
            if ".quickstart/examples.log" in command:
                # A reader waits until the examples printed the secret; so does the test (the workflow runs asynchronously).
                wait_until(lambda: "send_verification_email" in examples_log.read_text(), 30, "the examples to print the secret")
            status, output = shell.run(command)
            assert status == 0, f"{example.command}\nexited with {status}; stderr:\n{shell.stderr_path.read_text()}"
            assert example.matches(output), f"{example.command}\nprinted {output.strip()!r}\nexpected {chr(10).join(example.expected)!r}"
    finally:
        shell.close()


def test_the_quick_start_prints_the_readmes_commands(quickstart: QuickStart) -> None:
    """What the quick start suggests trying is what the README shows (so the two cannot drift apart)."""
    readme_commands = {_one_line(example.command) for example in readme_examples((REPO_ROOT / "README.md").read_text())}
    ingress = quickstart.port("DURO_INGRESS_PORT")
    suggested = [_one_line(command.replace(f"localhost:{ingress}", "localhost:8080")) for command in _suggested_commands(quickstart.text())]
    assert len(suggested) >= 4, quickstart.text()
    missing = [command for command in suggested if command not in readme_commands]
    assert not missing, f"the quick start suggests commands the README does not show: {missing}"


def _one_line(command: str) -> str:
    return " ".join(command.replace("\\\n", " ").split())


def _suggested_commands(printed: str) -> list[str]:
    """The indented `curl` commands the quick start prints, continuation lines joined."""
    commands: list[str] = []
    continuing = False
    for line in printed.splitlines():
        if continuing:
            commands[-1] += "\n" + line
        elif line.startswith("  curl "):
            commands.append(line.strip())
        else:
            continue
        continuing = line.endswith("\\")
    return commands


def test_a_second_quick_start_says_so_and_fails(quickstart: QuickStart) -> None:
    second, output = start_quickstart(quickstart.directory, quickstart.environment)
    assert second.wait(60) == 1
    wait_until(lambda: "another quick start is running" in "".join(output), 5, "the second quick start's message")
    assert "duro is ready" not in "".join(output)


def test_a_quick_start_whose_port_is_taken_says_which(quickstart: QuickStart, tmp_path: Path) -> None:
    """Another checkout (its own state dir) on the same ports: refused before anything starts, naming the port and its variable."""
    environment = {**quickstart.environment, "DURO_QUICKSTART_DIR": str(tmp_path / ".quickstart"), "DURO_DATA_DIR": str(tmp_path / "data")}
    second, output = start_quickstart(tmp_path, environment)
    assert second.wait(60) == 1
    ingress = quickstart.port("DURO_INGRESS_PORT")
    wait_until(lambda: "is in use" in "".join(output), 5, "the refusal")
    assert f"port {ingress}, for duro's ingress, is in use" in "".join(output) and "DURO_INGRESS_PORT" in "".join(output)
    assert not (tmp_path / "data").exists(), "nothing may start when a port is taken"


def test_ctrl_c_stops_both_processes(quickstart: QuickStart) -> None:
    """Runs last in this module (pytest keeps file order): SIGINT ends the quick start with status 0 and frees every port."""
    os.killpg(quickstart.process.pid, signal.SIGINT)
    assert quickstart.process.wait(STOP_TIMEOUT_S) == 0, quickstart.text()
    for variable in README_PORTS.values():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", quickstart.port(variable)))  # fails if duro or the examples still listen
