"""The quick start: duro and its seed examples running on this machine, from nothing but Python >= 3.11.

Run it as `./scripts/quickstart` (which finds a Python >= 3.11 and runs this
file). In order, it:

1. refuses to start, exiting with status 1 and saying why, when another quick
   start of this checkout runs (a lock in the state dir) or when a port it needs
   is taken (by another duro, a Restate server, anything);
2. makes a virtual environment of its own (`.venv` in the checkout, so an
   externally managed system Python is left alone) and installs duro with its
   runtime dependencies there: only what it runs, nothing of the test suite.
   It installs with uv (fetched from the package index into the venv, with
   pip) because uv downloads in parallel, and with pip where uv cannot be had.
   It installs again only when pyproject.toml changed;
3. starts the seed examples (`examples/`, duro's SDK under hypercorn) and
   `duro serve` (embedded log, data in ./duro-data), waits until both answer,
   registers the examples, and prints what to try next;
4. echoes the examples' side effects (lines starting with `[examples]`) and any
   warning of duro until Ctrl-C or SIGTERM, then stops both processes.

Both processes log in full to the state dir (`.quickstart/duro.log`,
`.quickstart/examples.log`); the installation to `.quickstart/install.log`.

Settings (environment variables): DURO_INGRESS_PORT (8080), DURO_ADMIN_PORT
(9070), DURO_EXAMPLES_PORT (9080), DURO_DATA_DIR (./duro-data),
DURO_QUICKSTART_DIR (./.quickstart), DURO_QUICKSTART_VENV (./.venv),
DURO_QUICKSTART_READY_TIMEOUT_MS (60000), DURO_QUICKSTART_STOP_TIMEOUT_MS
(10000), DURO_QUICKSTART_SKIP_INSTALL=1 (run with the Python running this
script, which must have duro's dependencies already: the tests do that).
Relative paths are taken from the checkout's root.

Only the standard library is used here, so it runs before anything is installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent.parent
EXIT_REFUSED = 1  # another quick start runs, a port is taken, or something failed: the message says which
POLL_INTERVAL_S = 0.1
LOG_TAIL_LINES = 30
HTTP_TIMEOUT_S = 5.0
UV_REQUIREMENT = "uv>=0.9,<1"  # the installer the quick start prefers; pip is the fallback


class QuickstartError(Exception):
    """The quick start cannot go on; the message says what happened and what to do."""


@dataclass(frozen=True)
class Settings:
    """What the quick start runs where; each field from its environment variable (see the module docstring)."""

    ingress_port: int
    admin_port: int
    examples_port: int
    data_dir: Path
    state_dir: Path
    venv_dir: Path
    ready_timeout_ms: int
    stop_timeout_ms: int
    skip_install: bool

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            ingress_port=_int_setting("DURO_INGRESS_PORT", 8080),
            admin_port=_int_setting("DURO_ADMIN_PORT", 9070),
            examples_port=_int_setting("DURO_EXAMPLES_PORT", 9080),
            data_dir=_path_setting("DURO_DATA_DIR", "duro-data"),
            state_dir=_path_setting("DURO_QUICKSTART_DIR", ".quickstart"),
            venv_dir=_path_setting("DURO_QUICKSTART_VENV", ".venv"),
            ready_timeout_ms=_int_setting("DURO_QUICKSTART_READY_TIMEOUT_MS", 60_000),
            stop_timeout_ms=_int_setting("DURO_QUICKSTART_STOP_TIMEOUT_MS", 10_000),
            skip_install=os.environ.get("DURO_QUICKSTART_SKIP_INSTALL", "") == "1",
        )

    def ports(self) -> list[tuple[str, str, int]]:
        """(what listens there, its variable, port) for every port the quick start needs."""
        return [
            ("duro's ingress", "DURO_INGRESS_PORT", self.ingress_port),
            ("duro's admin API", "DURO_ADMIN_PORT", self.admin_port),
            ("the seed examples", "DURO_EXAMPLES_PORT", self.examples_port),
        ]


def _int_setting(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise QuickstartError(f"{name} must be a whole number, got {text!r}") from None
    if value <= 0:
        raise QuickstartError(f"{name} must be above 0, got {value}")
    return value


def _path_setting(name: str, default: str) -> Path:
    return (ROOT / os.environ.get(name, default)).resolve()


def say(text: str) -> None:
    print(text, flush=True)


# --- 1. one quick start at a time ---------------------------------------------------------------


@contextlib.contextmanager
def single_instance(settings: Settings) -> Iterator[None]:
    """Hold the state dir's lock while the quick start runs; refuse if another holds it or a port is taken."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = settings.state_dir / "quickstart.lock"
    with open(lock_path, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise QuickstartError(
                f"another quick start is running from this checkout (pid {holder}, lock {lock_path}); "
                "use that one, or stop it with Ctrl-C in its terminal first"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        check_ports_free(settings)
        yield


def check_ports_free(settings: Settings) -> None:
    for what, variable, port in settings.ports():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise QuickstartError(
                    f"port {port}, for {what}, is in use: is another duro, quick start or Restate server running? "
                    f"Stop it, or pick another port with {variable}=..."
                ) from None


# --- 2. a virtual environment of its own ---------------------------------------------------------


def python_with_duro(settings: Settings) -> Path:
    """The interpreter to run duro and the examples with: the quick start's venv, made and filled if needed."""
    if settings.skip_install:
        return Path(sys.executable)
    python = settings.venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = settings.venv_dir / ".duro-quickstart.sha256"
    wanted = _install_digest()
    if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == wanted:
        return python
    started = time.monotonic()
    say(f"installing duro and its dependencies into {_shown(settings.venv_dir)} (once; takes well under a minute) ...")
    log_path = settings.state_dir / "install.log"
    with open(log_path, "w", encoding="utf-8") as log:
        if not python.exists():
            venv.EnvBuilder(with_pip=False).create(settings.venv_dir)
        _install_duro(python, log, log_path)
    stamp.write_text(wanted + "\n", encoding="utf-8")
    say(f"installed in {time.monotonic() - started:.0f} s")
    return python


_QUIET_PIP = ["install", "--quiet", "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--no-compile"]


def _install_duro(python: Path, log: IO[str], log_path: Path) -> None:
    """Installs duro into the venv of `python`: with uv if it can be had, else (or if uv fails) with pip.

    uv fetches the ~45 wheels in parallel (on the machine the README's numbers come
    from: 10 s, where pip took 130 s). It comes from the package index like
    anything else, through a pip (`_pip_into`). uv reads its own list of
    certificate authorities, not the system's, so behind a proxy that
    re-signs TLS it can fail where pip works: then pip installs duro.
    """
    uv = python.parent / ("uv.exe" if os.name == "nt" else "uv")
    pip = None
    if not uv.exists():
        pip = _pip_into(python, log)
        if not _succeeds([*pip, *_QUIET_PIP, UV_REQUIREMENT], log):
            log.write(f"\ncould not install {UV_REQUIREMENT}; installing with pip instead (slower)\n")
    if uv.exists():
        if _succeeds([str(uv), "pip", "install", "--quiet", "--python", str(python), "-e", str(ROOT)], log):
            return
        log.write("\nuv could not install duro (above); installing with pip instead (slower)\n")
    _run_logged([*(pip or _pip_into(python, log)), *_QUIET_PIP, "-e", str(ROOT)], log, log_path, "installing duro")


def _pip_into(python: Path, log: IO[str]) -> list[str]:
    """A pip command that installs into the venv of `python`: the running Python's (`pip --python`), else one ensurepip puts in the venv."""
    system_pip = [sys.executable, "-m", "pip", "--python", str(python)]
    if _succeeds([*system_pip, "--version"], log):
        return system_pip
    if not _succeeds([str(python), "-m", "ensurepip", "--default-pip"], log):
        raise QuickstartError(
            f"found no pip to install with: neither `{sys.executable} -m pip` (22.3 or later) nor ensurepip in the venv works; "
            "on Debian or Ubuntu, install the python3-pip or python3-venv package and run the quick start again"
        )
    return [str(python), "-m", "pip"]


def _succeeds(command: list[str], log: IO[str]) -> bool:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    started = time.monotonic()
    code = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_quiet_environment()).returncode
    log.write(f"(exit status {code} after {time.monotonic() - started:.1f} s)\n")
    return code == 0


def _run_logged(command: list[str], log: IO[str], log_path: Path, what: str) -> None:
    if not _succeeds(command, log):
        log.flush()
        raise QuickstartError(f"{what} failed:\n{_tail(log_path)}\nfull log: {_shown(log_path)}")


def _install_digest() -> str:
    """What the venv's contents depend on: the project's dependencies and the Python that made it."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def _quiet_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.update({"PIP_NO_COLOR": "1", "PIP_PROGRESS_BAR": "off", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    return environment


# --- 3. start, wait until ready, register ---------------------------------------------------------


@dataclass
class Child:
    """One process the quick start runs, its output copied to a log file (and some lines to the terminal)."""

    name: str
    process: subprocess.Popen[str]
    log_path: Path
    copier: threading.Thread

    @classmethod
    def start(cls, name: str, command: list[str], log_path: Path, shown_prefixes: tuple[str, ...]) -> Child:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_quiet_environment(),
            start_new_session=True,  # Ctrl-C reaches the quick start alone, which stops its children once
        )
        assert process.stdout is not None, "stdout is a pipe"
        copier = threading.Thread(target=_copy_output, args=(process.stdout, log_path, shown_prefixes), name=f"{name} output", daemon=True)
        copier.start()
        return cls(name, process, log_path, copier)

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout_s: float) -> None:
        """SIGINT, then SIGKILL if it has not ended after `timeout_s`; waits for its output to be copied."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {timeout_s:.0f} s of SIGINT; killed it")
                self.process.kill()
                self.process.wait()
        self.copier.join(timeout_s)


def _copy_output(stream: IO[str], log_path: Path, shown_prefixes: tuple[str, ...]) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        for line in stream:
            log.write(line)
            log.flush()
            if line.startswith(shown_prefixes) or any(level in line for level in (" WARNING ", " ERROR ", " CRITICAL ")):
                print(line, end="", flush=True)


def start_children(settings: Settings, python: Path) -> list[Child]:
    settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
    for log_name in ("examples.log", "duro.log"):
        (settings.state_dir / log_name).write_text("", encoding="utf-8")
    examples = Child.start(
        "the seed examples",
        [str(python), "-m", "examples.app", "--port", str(settings.examples_port)],
        settings.state_dir / "examples.log",
        ("[examples]", "Traceback"),
    )
    duro = Child.start(
        "duro serve",
        [
            *(str(python), "-m", "duro", "serve", "--data-dir", str(settings.data_dir)),
            *("--ingress-port", str(settings.ingress_port), "--admin-port", str(settings.admin_port)),
        ],
        settings.state_dir / "duro.log",
        ("Traceback",),
    )
    return [examples, duro]


def wait_until_ready(settings: Settings, children: list[Child]) -> None:
    """Poll duro's health endpoints and the examples' port until all answer, for at most the ready timeout."""
    deadline = time.monotonic() + settings.ready_timeout_ms / 1000
    pending = {
        f"http://127.0.0.1:{settings.admin_port}/health": "duro's admin API",
        f"http://127.0.0.1:{settings.ingress_port}/restate/health": "duro's ingress",
        f"tcp://127.0.0.1:{settings.examples_port}": "the seed examples",
    }
    while pending:
        raise_if_any_exited(children, "before it was ready")
        for url in list(pending):
            if _answers(url):
                del pending[url]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise QuickstartError(
                f"{', '.join(pending.values())} did not answer within DURO_QUICKSTART_READY_TIMEOUT_MS={settings.ready_timeout_ms}; "
                f"see {_shown(settings.state_dir)}/duro.log and examples.log"
            )
        time.sleep(POLL_INTERVAL_S)  # polling a condition under a deadline


def _answers(url: str) -> bool:
    if url.startswith("tcp://"):
        host, port = url.removeprefix("tcp://").split(":")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
            return True
        return False
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def raise_if_any_exited(children: list[Child], when: str) -> None:
    for child in children:
        code = child.exited()
        if code is not None:
            child.copier.join(1)
            raise QuickstartError(f"{child.name} exited with status {code} {when}; its last lines:\n{_tail(child.log_path)}")


def register_examples(settings: Settings) -> list[str]:
    """Register the examples' endpoint with duro (again: `force`, so an edited example replaces its old registration)."""
    body = json.dumps({"uri": f"http://127.0.0.1:{settings.examples_port}", "force": True}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.admin_port}/deployments", data=body, method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise QuickstartError(f"registering the examples failed: {error.code} {error.read().decode(errors='replace')}") from None
    except (OSError, urllib.error.URLError) as error:
        raise QuickstartError(f"registering the examples failed: {error}") from None
    return [str(service["name"]) for service in answer.get("services", [])]


def next_steps(settings: Settings, services: list[str], ready_s: float) -> str:
    """What to try next: the README's first commands (tests/e2e/test_quickstart.py checks that they are the README's)."""
    ingress = f"localhost:{settings.ingress_port}"
    return f"""
duro is ready ({ready_s:.1f} s): ingress http://{ingress}, admin API http://localhost:{settings.admin_port}, data in {_shown(settings.data_dir)}
registered {", ".join(services)} (the seed examples, on port {settings.examples_port})

Try, in another terminal (README.md, "Quick start", shows each answer and goes on):

  curl -X POST {ingress}/ShoppingCart/ada/add_item -H 'content-type: application/json' \\
       -d '{{"product_id": "tea", "price": 3.5, "quantity": 2}}'
  curl -X POST {ingress}/ShoppingCart/ada/get_total
  curl -X POST {ingress}/UserSignup/ada/run/send -H 'content-type: application/json' \\
       -d '{{"name": "Ada", "email": "ada@example.com"}}'
  curl {ingress}/restate/workflow/UserSignup/ada/output

The examples' side effects show below and in {_shown(settings.state_dir / "examples.log")}; duro logs to {_shown(settings.state_dir / "duro.log")}.
Ctrl-C stops duro and the examples; the state stays in {_shown(settings.data_dir)} for the next start.
"""


# --- 4. run until stopped ------------------------------------------------------------------------


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def run(settings: Settings) -> int:
    with single_instance(settings):
        python = python_with_duro(settings)
        started = time.monotonic()
        say("starting duro and the seed examples ...")
        children = start_children(settings, python)
        try:
            wait_until_ready(settings, children)
            services = register_examples(settings)
            say(next_steps(settings, services, time.monotonic() - started))
            while True:
                raise_if_any_exited(children, "unexpectedly")
                time.sleep(POLL_INTERVAL_S * 5)  # watching the children; a signal ends the wait at once
        except Stop:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping is bounded by DURO_QUICKSTART_STOP_TIMEOUT_MS
            say("\nstopping duro and the seed examples ...")
            return 0
        finally:
            for child in reversed(children):
                child.stop(settings.stop_timeout_ms / 1000)


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the checkout when inside it."""
    try:
        return "./" + str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(f"  {line}" for line in lines[-LOG_TAIL_LINES:]) or "  (nothing)"


def main() -> int:
    if sys.version_info < MIN_PYTHON:
        print(f"quickstart: needs Python >= 3.11, this is {sys.version.split()[0]}", file=sys.stderr)
        return EXIT_REFUSED
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        return run(Settings.from_environment())
    except QuickstartError as error:
        print(f"quickstart: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except Stop:
        return 0


if __name__ == "__main__":
    sys.exit(main())
