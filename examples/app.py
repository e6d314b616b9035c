"""Serves the seed examples: `app` is the ASGI app; `python -m examples.app --port 9080` runs it under hypercorn.

hypercorn is configured as the Restate SDK endpoints need (see
/work/shared/tools/restate-server/README.md): `keep_alive_max_requests`
raised so a busy HTTP/2 connection is never closed under an in-flight
invocation, and `keep_alive_timeout` of 300 s to match the runtime's idle
connection timeout. HTTP/2 cleartext (prior knowledge) and HTTP/1.1 are both
served on the same port. Run it as `python -m examples.app` (or
`python examples/app.py`, or `hypercorn examples.app:app`) from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import hypercorn.asyncio
from hypercorn.config import Config

if __package__ in (None, ""):  # run as `python examples/app.py`: make the `examples` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sdk as restate
from examples.services import cart_object, signup_workflow, subscription_service

DEFAULT_PORT = 9080
KEEP_ALIVE_MAX_REQUESTS = 2**31 - 1
KEEP_ALIVE_TIMEOUT_S = 300
GRACEFUL_TIMEOUT_S = 3

app = restate.app([subscription_service, cart_object, signup_workflow])


def hypercorn_config(host: str, port: int) -> Config:
    """hypercorn settings for an SDK endpoint."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    return config


def serve(asgi_app: Any, description: str) -> None:
    """Parses --host/--port and serves `asgi_app` until interrupted (SIGINT or SIGTERM)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to bind (default {DEFAULT_PORT})")
    arguments = parser.parse_args()
    asyncio.run(hypercorn.asyncio.serve(asgi_app, hypercorn_config(arguments.host, arguments.port)))


if __name__ == "__main__":
    serve(app, "Serve the seed examples on duro's SDK.")
