"""Serve an ASGI service endpoint with hypercorn for tests: `python -m tests.services.serve MODULE:ATTR --port N [--http1]`.

HTTP/2 cleartext (prior knowledge) and HTTP/1.1 are both served on the port;
keep-alive limits are raised so long test runs are not cut by connection
recycling.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib

import hypercorn.asyncio
import hypercorn.config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", help="module:attribute of the ASGI app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-requests", type=int, default=1_000_000_000, help="requests per connection before hypercorn sends GOAWAY")
    parser.add_argument("--certfile", help="serve TLS (ALPN h2 and http/1.1) with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    args = parser.parse_args()
    module_name, _, attribute = args.app.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.keep_alive_timeout = 300
    config.keep_alive_max_requests = args.max_requests
    config.h2_max_concurrent_streams = 1000
    config.loglevel = "WARNING"
    if args.certfile:
        config.certfile = args.certfile
        config.keyfile = args.keyfile
    asyncio.run(hypercorn.asyncio.serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
