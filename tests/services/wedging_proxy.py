"""A TCP proxy in front of a service endpoint that can wedge a connection, for tests of dead deployment connections.

`python -m tests.services.wedging_proxy --port P --upstream PORT --trigger FILE`

Every connection is piped both ways to the upstream port, except the first
one accepted after FILE appears (FILE is then deleted): that one passes the
upstream's bytes to the client (so an HTTP/2 client sees the server's
SETTINGS and thinks the connection is fine) but never reads what the client
sends, and never closes. It is a peer that stopped reading while its socket
stays open; the connections after it work normally.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


class WedgingProxy:
    def __init__(self, upstream_port: int, trigger: str) -> None:
        self._upstream_port = upstream_port
        self._trigger = trigger
        self._held: list[asyncio.StreamWriter] = []

    def _take_trigger(self) -> bool:
        """True (once) if the trigger file exists; it is deleted."""
        try:
            os.unlink(self._trigger)
        except FileNotFoundError:
            return False
        return True

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        if self._take_trigger():
            self._held += [client_writer, upstream_writer]  # kept open for ever, never read
            print("wedged a connection", flush=True)
            await _pipe(upstream_reader, client_writer)
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--trigger", required=True)
    args = parser.parse_args()
    proxy = WedgingProxy(args.upstream, args.trigger)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
