"""A node of several worker processes: the supervisor that starts them, restarts a killed one, shares their metadata and stops them.

`duro serve` with `workers > 1` (embedded log) runs this instead of a node in
its own process. The supervisor:

- locks the data dir (`duro.lock`; every worker inherits the lock, so a new
  node on the same data dir waits until the last process of the old one is
  gone) and checks that the ingress and admin ports are free, then holds them
  with an SO_REUSEPORT socket of its own that never listens;
- starts worker `i` of `n` as `python -m duro serve ...` with `DURO_PROCESS_ROLE`
  naming its index, the node's run token and two inherited descriptors (its
  control socket and the lock); each worker runs the partitions `p % n == i`
  with its own log files and RocksDB under `workers/<i>/`, and listens on the
  node's ingress and admin ports itself (SO_REUSEPORT: the kernel spreads
  connections over the workers), so a request reaches a worker without passing
  through another process;
- waits for every worker to serve, as long as each keeps making progress: a
  starting worker reports its step and the log positions its partitions
  applied (`PROGRESS`, about once a second while it changes), and one that
  reports nothing new for `worker.start_stall_timeout_ms` is stuck and stops
  the node, named with its last report (a long replay is not stuck); the same
  bound holds for every restart of a worker;
- keeps the node's deployment registry and subscriptions for the workers
  (`duro.worker_metadata`);
- restarts a worker that a signal ended (kill -9, the OOM killer) after
  `worker.restart_initial_backoff_ms`, doubling to `worker.restart_max_backoff_ms`
  while it keeps dying within `worker.restart_max_backoff_ms` of its start (a
  worker that ran longer starts the series again); the others serve meanwhile
  (requests for the dead worker's partitions are answered 503 until it is
  back). A worker that exits
  by itself (a fatal error: status 1, or a stop that overran: status 3) stops
  the whole node with its status, as a one-process node would, and so does a
  worker that cannot be restarted (its watcher failed);
- on SIGTERM or SIGINT sends each worker SIGTERM (each drains as a node does),
  a second signal again, and exits 0 once every worker exited 0. Workers run
  in sessions of their own, so a signal to the node's process group reaches
  the supervisor alone, and die with it (PR_SET_PDEATHSIG): kill -9 of the
  supervisor is kill -9 of the node.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import functools
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from duro.layout import DATA_DIR_LOCK_FILE
from duro.settings import DuroSettings
from duro.worker_metadata import MetadataService

log = logging.getLogger("duro.supervisor")

WORKER_ENV = "DURO_PROCESS_ROLE"  # not DURO_WORKER: settings read DURO_* variables, and `worker` is a group
WORKER_LOG_ID_ENV = "DURO_PROCESS_LOG_ID"  # the node's log id, which names each worker's snapshots
LOCK_FILE = DATA_DIR_LOCK_FILE
EXIT_FATAL = 1
_PR_SET_PDEATHSIG = 1
_STOP_MARGIN_S = 5.0


class SupervisorStartError(Exception):
    """The node cannot start; the message says why."""


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """What a worker process is told by its supervisor (the `DURO_PROCESS_ROLE` variable)."""

    index: int
    count: int
    node_token: str
    control_fd: int
    lock_fd: int

    def encode(self) -> str:
        return f"{self.index}/{self.count}/{self.node_token}/{self.control_fd}/{self.lock_fd}"

    @staticmethod
    def decode(text: str) -> WorkerRole:
        index, count, token, control_fd, lock_fd = text.split("/")
        return WorkerRole(int(index), int(count), token, int(control_fd), int(lock_fd))


def lock_data_dir(data_dir: Path, wait_s: float) -> int:
    """Lock the data dir for this node and write our pid into the lock file; its descriptor.

    Waits up to `wait_s` (`worker.data_dir_lock_wait_ms`) for the last process
    of a node that just died (its workers end a moment after their supervisor).
    """
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
                os.close(fd)
                raise SupervisorStartError(
                    f"data dir {data_dir} is in use by another duro process (pid {holder}); stop that process or point this one"
                    " at another --data-dir"
                ) from None
            time.sleep(0.05)  # a lock has no event to wait for
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def reserve_port(host: str, port: int, what: str) -> socket.socket:
    """Check that host:port is free, then hold it with an SO_REUSEPORT socket that never listens (the workers listen)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    except OSError as error:
        raise SupervisorStartError(f"cannot listen for the {what} API on {host}:{port}: {error.strerror}") from None
    finally:
        probe.close()
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((host, port))
    except OSError as error:
        holder.close()
        raise SupervisorStartError(f"cannot listen for the {what} API on {host}:{port}: {error.strerror}") from None
    return holder


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the supervisor dies, so a killed node leaves no worker behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts_in_a_row: int = 0
    ready: bool = False
    starting: bool = True  # started (first or restarted) and not yet serving; False while it waits to be restarted
    progress: str = "started"  # its last start-up progress report (`StartProgress.describe`)
    progress_at: float = 0.0  # monotonic time of its start or of its last report that showed progress


class Supervisor:
    """Runs the workers of one node until it is told to stop (see the module docstring)."""

    def __init__(self, settings: DuroSettings, workers: int, log_id: str) -> None:
        self.settings = settings
        self.count = workers
        self.log_id = log_id
        self.node_token = secrets.token_hex(8)
        self._workers = [_Worker(index) for index in range(workers)]
        self._stop_requested = asyncio.Event()
        self._signals = 0
        self._exit_code = 0
        self._failure = ""
        self._changed = asyncio.Event()
        self._lock_fd = -1
        self._ports: list[socket.socket] = []
        self._argv: list[str] = []
        self._metadata = MetadataService(settings.data_dir, settings.worker.control_timeout_ms)

    async def run(self) -> int:
        settings = self.settings
        self._lock_fd = lock_data_dir(settings.data_dir, settings.worker.data_dir_lock_wait_ms / 1000)
        ingress = reserve_port(settings.bind, settings.ingress_port, "ingress")
        self._ports.append(ingress)
        admin = reserve_port(settings.admin_bind or settings.bind, settings.admin_port, "admin")
        self._ports.append(admin)
        ingress_port, admin_port = ingress.getsockname()[1], admin.getsockname()[1]
        self._argv = [sys.executable, "-m", "duro", *sys.argv[1:], "--ingress-port", str(ingress_port), "--admin-port", str(admin_port)]
        await self._metadata.load()
        self._metadata.on_ready = self._on_ready
        self._metadata.on_progress = self._on_progress
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        for worker in self._workers:
            await self._start(worker)
        watchers = [self._watcher(worker) for worker in self._workers]
        try:
            await self._wait_all_ready(settings.worker.start_stall_timeout_ms / 1000)
            if not self._stop_requested.is_set():
                log.info(
                    "duro node %d ready: ingress http://%s:%d admin http://%s:%d, %d partitions on the embedded log in %d workers, data in %s",
                    settings.node_id, settings.advertised_host or settings.bind, ingress_port,
                    settings.advertised_host or settings.admin_bind or settings.bind, admin_port,
                    settings.partitions, self.count, settings.data_dir,
                )  # fmt: skip
            await self._wait_all_ready(settings.worker.start_stall_timeout_ms / 1000, until_stopped=True)  # restarts: same bound
            await self._stop_workers()
        finally:
            for watcher in watchers:
                watcher.cancel()
            for sock in self._ports:
                sock.close()
        if self._failure:
            log.critical("duro node %d stopped: %s", settings.node_id, self._failure)
        else:
            log.info("duro node %d stopped", settings.node_id)
        return self._exit_code

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        log.info("%s received: stopping the workers", signal.Signals(signum).name)
        self._stop_requested.set()
        self._changed.set()
        if self._signals > 1:
            self._signal_workers(signal.SIGTERM)  # a second signal: each worker cuts its graceful phase short

    def _on_ready(self, index: int) -> None:
        worker = self._workers[index]
        worker.ready = True
        worker.starting = False
        self._metadata.workers_ready({w.index for w in self._workers if w.ready})
        self._changed.set()

    def _on_progress(self, index: int, progress: str) -> None:
        """A starting worker's report: a new one (another step, more records replayed) restarts its stall bound."""
        worker = self._workers[index]
        if progress != worker.progress:
            log.debug("worker %d starting: %s", index, progress)
            worker.progress = progress
            worker.progress_at = time.monotonic()
            self._changed.set()

    async def _start(self, worker: _Worker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        role = WorkerRole(worker.index, self.count, self.node_token, child.fileno(), self._lock_fd)
        env = {**os.environ, WORKER_ENV: role.encode(), WORKER_LOG_ID_ENV: self.log_id}
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._argv,
                env=env,
                pass_fds=(child.fileno(), self._lock_fd),
                preexec_fn=_die_with_parent,
                start_new_session=True,  # a signal to the node's process group (Ctrl-C, killpg) reaches the supervisor alone
            )
        finally:
            child.close()
        worker.started_at = worker.progress_at = time.monotonic()
        worker.progress = "started"
        worker.ready = False
        worker.starting = True
        self._changed.set()  # its start is bounded from now on
        await self._metadata.attach(worker.index, parent)
        log.info("worker %d of node %d started (pid %d)", worker.index, self.settings.node_id, worker.process.pid)

    async def _wait_all_ready(self, stall_s: float, until_stopped: bool = False) -> None:
        """Wait until every worker serves; a worker that reports no progress for `stall_s` (`worker.start_stall_timeout_ms`)
        is stuck and stops the node, however long the others or its own earlier steps took.

        With `until_stopped`, go on until the node stops, bounding every restart of a worker the same way.
        """
        while not self._stop_requested.is_set():
            if not until_stopped and all(worker.ready for worker in self._workers):
                return
            starting = [worker for worker in self._workers if worker.starting and not worker.ready]
            if not starting:  # all serve, or one waits to be restarted (its bound begins at its start)
                self._changed.clear()
                await self._changed.wait()
                continue
            now = time.monotonic()
            stuck = [worker for worker in starting if now - worker.progress_at >= stall_s]
            if stuck:
                self._fail(
                    "; ".join(
                        f"worker {worker.index} made no start-up progress for {now - worker.progress_at:.1f} s"
                        f" (worker.start_stall_timeout_ms={self.settings.worker.start_stall_timeout_ms}; last: {worker.progress})"
                        for worker in stuck
                    )
                )
                return
            self._changed.clear()
            try:
                async with asyncio.timeout(min(worker.progress_at for worker in starting) + stall_s - now):
                    await self._changed.wait()
            except TimeoutError:
                continue

    def _watcher(self, worker: _Worker) -> asyncio.Task[None]:
        """`_watch` as a task whose death stops the node (a worker nobody watches would never be restarted)."""
        task = asyncio.create_task(self._watch(worker), name=f"worker {worker.index} watcher")
        task.add_done_callback(functools.partial(self._watcher_ended, worker.index))
        return task

    def _watcher_ended(self, index: int, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("watching worker %d failed", index, exc_info=error)
        self._fail(f"worker {index} could not be watched or restarted ({type(error).__name__}: {error})")

    async def _watch(self, worker: _Worker) -> None:
        """Wait for the worker to end: restart it if a signal ended it (killed, or stopped gracefully alone), stop the node if it failed."""
        while worker.process is not None:
            code = await worker.process.wait()
            if self._stop_requested.is_set():
                return
            worker.process = None
            worker.ready = False
            worker.starting = False  # its stall bound begins again when it is restarted
            self._metadata.workers_ready({w.index for w in self._workers if w.ready})
            if time.monotonic() - worker.started_at > self.settings.worker.restart_max_backoff_ms / 1000:
                worker.restarts_in_a_row = 0  # it ran a while: this death is not one of a series
            if code < 0:
                await self._restart(worker, signal.Signals(-code).name)
            elif code == 0:  # a worker exits 0 only after a graceful stop: a SIGTERM sent to it alone, not to the node
                await self._restart(worker, "a stop signal sent to it alone (it drained and exited 0)")
            else:
                self._fail(f"worker {worker.index} exited with status {code}", code)

    async def _restart(self, worker: _Worker, signal_name: str) -> None:
        backoff_ms = min(
            self.settings.worker.restart_initial_backoff_ms * 2**worker.restarts_in_a_row, self.settings.worker.restart_max_backoff_ms
        )
        worker.restarts_in_a_row += 1
        log.warning(
            "worker %d of node %d was ended by %s; the other workers serve on, restarting it in %d ms",
            worker.index, self.settings.node_id, signal_name, backoff_ms,
        )  # fmt: skip
        try:
            async with asyncio.timeout(backoff_ms / 1000):
                await self._stop_requested.wait()
            return  # the node stops: no restart
        except TimeoutError:
            pass
        await self._start(worker)

    def _fail(self, why: str, code: int = EXIT_FATAL) -> None:
        if not self._stop_requested.is_set():
            self._failure = why
            self._exit_code = code
            self._stop_requested.set()
            self._changed.set()

    def _signal_workers(self, signum: int) -> None:
        for worker in self._workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signum)

    async def _stop_workers(self) -> None:
        """SIGTERM to every worker, then wait for each (bounded by the shutdown settings plus a margin; then SIGKILL)."""
        self._signal_workers(signal.SIGTERM)
        shutdown = self.settings.shutdown
        running = [worker for worker in self._workers if worker.process is not None]
        waits = [asyncio.ensure_future(worker.process.wait()) for worker in running if worker.process is not None]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=(shutdown.timeout_ms + shutdown.close_timeout_ms) / 1000 + _STOP_MARGIN_S)
        if pending:
            log.error("%d workers still ran after the shutdown bounds; killing them", len(pending))
            self._signal_workers(signal.SIGKILL)
            await asyncio.wait(waits)
        for worker, wait in zip(running, waits, strict=True):
            code = wait.result()
            if code != 0 and self._exit_code == 0:
                self._exit_code = code if code > 0 else EXIT_FATAL
                self._failure = self._failure or f"worker {worker.index} exited with status {code}"


def run_supervisor(settings: DuroSettings, workers: int, log_id: str) -> int:
    """Run a node of `workers` worker processes until it stops; its exit status. SupervisorStartError if it cannot start."""
    return asyncio.run(Supervisor(settings, workers, log_id).run())
