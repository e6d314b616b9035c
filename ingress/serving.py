"""Runs an ASGI app (the ingress or the admin API) under uvicorn inside the caller's asyncio loop.

`NodeHttpServer` is how `duro serve` runs them: on a socket the node bound
itself (so a port in use is the node's start-up error, not uvicorn's
`sys.exit`), without uvicorn's signal handlers, drained and closed by the
node's lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from ingress.connections import ConnectionLimits, bounded_protocol

log = logging.getLogger("duro.http")

DEFAULT_START_TIMEOUT_MS = 10_000


def server_for(app: Any, host: str, port: int, log_level: str = "warning", **config: Any) -> uvicorn.Server:
    """A uvicorn server for `app` on host:port, without access log and lifespan; not started."""
    settings = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="off", **config)
    return uvicorn.Server(settings)


async def serve_app(app: Any, host: str, port: int, log_level: str = "warning", **config: Any) -> None:
    """Serve `app` until the server exits (SIGINT/SIGTERM, or `should_exit` set on it).

    uvicorn captures SIGINT/SIGTERM while it serves, then re-raises them;
    run two servers in one loop with `asyncio.gather(serve_app(a), serve_app(b))`.
    """
    await server_for(app, host, port, log_level, **config).serve()


async def start_app(
    app: Any, host: str, port: int, start_timeout_ms: int = DEFAULT_START_TIMEOUT_MS, **config: Any
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start serving `app` in a task and return once it listens; stop with `stop_app`.

    Port 0 picks a free port; read it with `bound_port(server)`.
    """
    server = server_for(app, host, port, **config)
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + start_timeout_ms / 1000
    while not server.started:
        if task.done():
            await task
            raise RuntimeError(f"uvicorn stopped before listening on {host}:{port}")
        if asyncio.get_running_loop().time() > deadline:
            server.should_exit = True
            raise TimeoutError(f"uvicorn did not listen on {host}:{port} within {start_timeout_ms} ms")
        await asyncio.sleep(0.01)
    return server, task


async def stop_app(server: uvicorn.Server, task: asyncio.Task[None], timeout_ms: int = DEFAULT_START_TIMEOUT_MS) -> None:
    """Ask the server to exit and wait for it (bounded by `timeout_ms`)."""
    server.should_exit = True
    await asyncio.wait_for(task, timeout_ms / 1000)


def bound_port(server: uvicorn.Server) -> int:
    """The TCP port a started server listens on."""
    for listener in server.servers:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server has no listening socket")


class _ServerWithoutSignals(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to the node.

    uvicorn (0.29 and later) installs its own handlers while it serves, which
    would replace the node's: a SIGTERM would then only close the ports and wait
    for in-flight requests, and the node's own shutdown would start after them.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class NodeHttpServer:
    """One HTTP server of a node (`name`: "ingress" or "admin"): listen, start, drain, close."""

    def __init__(self, name: str, app: Any, host: str, port: int, limits: ConnectionLimits | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        config: dict[str, Any] = {}
        if limits is not None:
            config = {"http": bounded_protocol(limits), "timeout_keep_alive": limits.idle_timeout_ms / 1000}
        self._server = _ServerWithoutSignals(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", log_config=None, **config)
        )
        self._socket: socket.socket | None = None
        self.task: asyncio.Task[None] | None = None

    def listen(self, reuse_port: bool = False) -> None:
        """Bind and listen; raises OSError (address in use, permission) naming nothing: the caller says where.

        With `reuse_port` (SO_REUSEPORT) the port is shared with the other worker processes of the node: the kernel
        spreads new connections over them.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(self._server.config.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._socket = sock

    async def start(self, start_timeout_ms: int = DEFAULT_START_TIMEOUT_MS) -> asyncio.Task[None]:
        """Serve on the bound socket; return the serving task once the server accepts connections."""
        assert self._socket is not None, "listen() before start()"
        self.task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name=f"{self.name} HTTP server")
        deadline = asyncio.get_running_loop().time() + start_timeout_ms / 1000
        while not self._server.started:
            if self.task.done():
                await self.task
                raise RuntimeError(f"the {self.name} HTTP server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the {self.name} HTTP server did not start within {start_timeout_ms} ms")
            await asyncio.sleep(0.01)
        return self.task

    @property
    def open_connections(self) -> int:
        return len(self._server.server_state.connections)

    async def drain(self) -> None:
        """Stop accepting and wait until every in-flight request was answered (unbounded: the caller bounds it)."""
        self._server.should_exit = True
        if self.task is not None:
            await asyncio.shield(self.task)

    async def close(self, timeout_ms: int) -> None:
        """Stop accepting, give in-flight requests `timeout_ms` to be answered, then drop what is left."""
        self._server.should_exit = True
        if self.task is None:
            if self._socket is not None:
                self._socket.close()
            return
        done, _ = await asyncio.wait([self.task], timeout=timeout_ms / 1000)
        if done:
            return
        log.warning("%s HTTP server: %d requests still open after %d ms; dropping them", self.name, self.open_connections, timeout_ms)
        self._server.force_exit = True
        for task in list(self._server.server_state.tasks):
            task.cancel()
        for connection in list(self._server.server_state.connections):
            connection.transport.close()
        await asyncio.wait([self.task], timeout=timeout_ms / 1000)
