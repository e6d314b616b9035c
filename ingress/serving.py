"""Runs an ASGI app (the ingress or the admin API) under uvicorn inside the caller's asyncio loop."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

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
