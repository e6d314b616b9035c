"""Tests the h2c client against a real hypercorn server speaking HTTP/2 prior knowledge."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator
from typing import Self

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from protocol.errors import ConnectionLostError, H2cError, StreamClosedError, StreamTimeoutError
from protocol.h2c import H2cClient

pytestmark = pytest.mark.timeout(60)

BIG_BYTES = 1024 * 1024 + 17  # well over the 64 KiB initial window


async def app(scope: dict, receive, send) -> None:
    """echo: streams each request chunk back at once; sink: hashes the body;
    big: sends BIG_BYTES; hold: answers headers, then waits for the body to end; silent: never answers."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        await _echo(receive, send)
    elif path == "/sink":
        body = await _read_all(receive)
        digest = hashlib.sha256(body).hexdigest().encode()
        await _respond(send, 200, digest)
    elif path == "/big":
        await _read_all(receive)
        await _respond(send, 200, _pattern(BIG_BYTES))
    elif path == "/silent":
        await _read_all(receive)
        await asyncio.Event().wait()  # never answers: no headers, no body
    elif path == "/hold":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await _read_all(receive)
        await send({"type": "http.response.body", "body": b"done", "more_body": False})
    else:
        await _read_all(receive)
        await _respond(send, 404, b"no such path")


async def _echo(receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-mode", b"echo")]})
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        if message.get("body"):
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_all(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@contextlib.asynccontextmanager
async def running_server(**config_values: object) -> AsyncIterator[str]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    for key, value in config_values.items():
        setattr(config, key, value)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        # hypercorn itself may raise while cancelling streams still in flight at
        # shutdown; that is the server's business, not the client's under test.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(server, 5)


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    async with running_server() as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[H2cClient]:
    h2c = H2cClient(max_connections_per_origin=4)  # the default connect timeout: the server shares this test's busy event loop
    yield h2c
    await h2c.aclose()


async def test_full_duplex_echo_round_trips_before_ending(origin: str, client: H2cClient) -> None:
    stream = await client.open_stream(origin, "POST", "/echo", [("content-type", "application/octet-stream")])
    status, headers = await asyncio.wait_for(stream.response_headers(), 5)
    assert status == 200 and ("x-mode", "echo") in headers
    for index in range(20):
        chunk = f"chunk-{index}".encode()
        await stream.send(chunk)
        echoed = await asyncio.wait_for(_read_exactly(stream, len(chunk)), 5)
        assert echoed == chunk
    await stream.end()
    assert await asyncio.wait_for(stream.read(), 5) == b""
    assert stream.finished


async def _read_exactly(stream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.read()
        assert chunk, "stream ended early"
        data += chunk
    return data


async def test_request_convenience_and_status(origin: str, client: H2cClient) -> None:
    status, headers, body = await client.request(origin, "POST", "/sink", [], b"hello")
    assert (status, body) == (200, hashlib.sha256(b"hello").hexdigest().encode())
    assert ("content-type", "text/plain") in headers
    status, _, body = await client.request(origin, "GET", "/missing", [])
    assert (status, body) == (404, b"no such path")


async def test_200_concurrent_streams_share_pooled_connections(origin: str, client: H2cClient) -> None:
    # hypercorn allows 100 concurrent streams per connection, so 200 open
    # streams need a second connection.
    streams = await asyncio.wait_for(asyncio.gather(*(client.open_stream(origin, "POST", "/echo", []) for _ in range(200))), 20)
    assert client.connection_count(origin) == 2
    await asyncio.gather(*(s.send(f"n{i}".encode()) for i, s in enumerate(streams)))
    echoes = await asyncio.wait_for(asyncio.gather(*(_read_exactly(s, len(f"n{i}")) for i, s in enumerate(streams))), 20)
    assert echoes == [f"n{i}".encode() for i in range(200)]
    await asyncio.gather(*(s.end() for s in streams))
    assert await asyncio.wait_for(asyncio.gather(*(s.read() for s in streams)), 20) == [b""] * 200


async def test_bodies_bigger_than_the_window_both_ways(origin: str, client: H2cClient) -> None:
    payload = _pattern(BIG_BYTES)
    status, _, body = await asyncio.wait_for(client.request(origin, "POST", "/sink", [], payload), 20)
    assert (status, body) == (200, hashlib.sha256(payload).hexdigest().encode())
    status, _, body = await asyncio.wait_for(client.request(origin, "GET", "/big", []), 20)
    assert status == 200 and body == payload


async def test_big_full_duplex_echo_with_small_receive_window(origin: str) -> None:
    h2c = H2cClient(max_recv_buffer_bytes=16 * 1024, max_connection_recv_buffer_bytes=64 * 1024)
    try:
        stream = await h2c.open_stream(origin, "POST", "/echo", [])
        payload = _pattern(BIG_BYTES)

        async def sender() -> None:
            await stream.send(payload)
            await stream.end()

        send_task = asyncio.create_task(sender())
        received = bytearray()
        while chunk := await asyncio.wait_for(stream.read(), 10):
            received += chunk
        await asyncio.wait_for(send_task, 10)
        assert bytes(received) == payload
    finally:
        await h2c.aclose()


async def test_response_larger_than_max_body_bytes_fails(origin: str, client: H2cClient) -> None:
    with pytest.raises(H2cError, match="max_body_bytes=1000"):
        await client.request(origin, "GET", "/big", [], max_body_bytes=1000)


async def test_goaway_fails_in_flight_streams_fast_and_next_stream_uses_new_connection(client: H2cClient) -> None:
    # hypercorn sends GOAWAY once a connection has seen more than 3 requests.
    async with running_server(keep_alive_max_requests=3) as url:
        held = [await client.open_stream(url, "POST", "/hold", []) for _ in range(3)]
        for stream in held:
            assert (await asyncio.wait_for(stream.response_headers(), 5))[0] == 200
        pending_reads = [asyncio.create_task(stream.read()) for stream in held]
        fourth = await client.open_stream(url, "POST", "/hold", [])  # the 4th request triggers GOAWAY
        started = asyncio.get_running_loop().time()
        results = await asyncio.wait_for(asyncio.gather(*pending_reads, fourth.response_headers(), return_exceptions=True), 5)
        assert asyncio.get_running_loop().time() - started < 2
        assert all(isinstance(r, ConnectionLostError) for r in results), results
        assert "GOAWAY" in str(results[0])
        with pytest.raises(ConnectionLostError):
            await held[0].send(b"more")

        status, _, body = await asyncio.wait_for(client.request(url, "POST", "/hold", [], b"x"), 5)
        assert (status, body) == (200, b"done")
        assert client.connection_count(url) == 1


async def test_connection_refused_fails_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    h2c = H2cClient(connect_timeout_ms=2000)
    try:
        with pytest.raises(ConnectionLostError, match="connection refused") as info:
            await asyncio.wait_for(h2c.open_stream(f"http://127.0.0.1:{port}", "GET", "/", []), 5)
        assert info.value.retry_safe
    finally:
        await h2c.aclose()


class CuttableProxy:
    """A TCP proxy to the server whose connections the test can cut, as a crash or network fault would."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._writers: list[asyncio.StreamWriter] = []
        self._readers: list[asyncio.StreamReader] = []
        self._frozen: set[asyncio.StreamReader] = set()
        self._thaw = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        self._thaw.set()
        for writer in self._writers:
            writer.transport.abort()

    def freeze(self) -> None:
        """The open connections stop moving bytes either way while their sockets stay open (a wedged peer); new ones work."""
        self._frozen.update(self._readers)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        self._writers += [client_writer, upstream_writer]
        self._readers += [client_reader, upstream_reader]
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if reader in self._frozen:
                    await self._thaw.wait()
                    return
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


async def test_cut_connection_fails_pending_operations_promptly(origin: str, client: H2cClient) -> None:
    async with CuttableProxy(int(origin.rsplit(":", 1)[1])) as proxy:
        stream = await client.open_stream(proxy.url, "POST", "/hold", [])
        await asyncio.wait_for(stream.response_headers(), 5)
        pending = asyncio.create_task(stream.read())
        await asyncio.sleep(0.05)
        assert not pending.done()
        proxy.cut()
        with pytest.raises(ConnectionLostError, match="EOF|lost"):
            await asyncio.wait_for(pending, 2)
        with pytest.raises(ConnectionLostError):
            await stream.send(b"late")
        status, _, _ = await asyncio.wait_for(client.request(proxy.url, "POST", "/sink", [], b"x"), 5)
        assert status == 200


async def test_reset_stream_fails_local_operations(origin: str, client: H2cClient) -> None:
    stream = await client.open_stream(origin, "POST", "/echo", [])
    stream.reset()
    with pytest.raises(StreamClosedError, match="reset by this client"):
        await stream.read()
    with pytest.raises(StreamClosedError):
        await stream.send(b"x")
    status, _, _ = await client.request(origin, "POST", "/sink", [], b"after reset")
    assert status == 200


async def test_bad_origins_are_rejected(client: H2cClient) -> None:
    with pytest.raises(H2cError, match="expected 'http://host:port'"):
        await client.open_stream("ftp://127.0.0.1:1", "GET", "/", [])
    with pytest.raises(H2cError, match="has a path"):
        await client.open_stream("http://127.0.0.1:1/x", "GET", "/", [])


async def test_closed_client_refuses_new_streams(origin: str) -> None:
    h2c = H2cClient()
    stream = await h2c.open_stream(origin, "POST", "/hold", [])
    await h2c.aclose()
    with pytest.raises(ConnectionLostError):
        await asyncio.wait_for(stream.read(), 5)
    with pytest.raises(H2cError, match="closed"):
        await h2c.open_stream(origin, "GET", "/", [])


async def test_abandoned_unread_responses_do_not_leak_the_connection_window(origin: str) -> None:
    # Each /big response (1 MiB) overfills a 256 KiB connection window unless
    # abandoning a stream hands its unread bytes back.
    h2c = H2cClient(max_connections_per_origin=1, max_recv_buffer_bytes=128 * 1024, max_connection_recv_buffer_bytes=256 * 1024)
    try:
        for _ in range(4):
            stream = await h2c.open_stream(origin, "GET", "/big", [])
            await stream.end()
            assert await asyncio.wait_for(stream.read(), 5)
            await asyncio.sleep(0.1)  # lets the stream window (128 KiB) fill up, unread
            await stream.aclose()
        status, _, body = await asyncio.wait_for(h2c.request(origin, "GET", "/big", []), 10)
        assert status == 200 and len(body) == BIG_BYTES
    finally:
        await h2c.aclose()


async def test_a_wedged_connection_is_declared_dead_by_its_unanswered_ping_and_the_next_request_opens_a_fresh_one(origin: str) -> None:
    h2c = H2cClient(connect_timeout_ms=2000, ping_interval_ms=100, ping_timeout_ms=300)
    try:
        async with CuttableProxy(int(origin.rsplit(":", 1)[1])) as proxy:
            stream = await h2c.open_stream(proxy.url, "POST", "/hold", [])
            await asyncio.wait_for(stream.response_headers(), 5)
            pending = asyncio.create_task(stream.read())
            proxy.freeze()
            with pytest.raises(ConnectionLostError, match="did not answer a PING within 300 ms"):
                await asyncio.wait_for(pending, 5)
            assert h2c.connection_count(proxy.url) == 0
            status, _, body = await asyncio.wait_for(h2c.request(proxy.url, "POST", "/sink", [], b"x"), 5)
            assert status == 200 and body == hashlib.sha256(b"x").hexdigest().encode()
    finally:
        await h2c.aclose()


async def test_a_live_connection_survives_its_pings(origin: str) -> None:
    h2c = H2cClient(connect_timeout_ms=2000, ping_interval_ms=20, ping_timeout_ms=1000)
    try:
        stream = await h2c.open_stream(origin, "POST", "/hold", [])
        await asyncio.wait_for(stream.response_headers(), 5)
        await asyncio.sleep(0.3)  # about 15 PINGs, each answered
        await stream.end()
        assert await asyncio.wait_for(stream.read(), 5) == b"done"
        assert h2c.connection_count(origin) == 1
    finally:
        await h2c.aclose()


async def test_streams_without_response_headers_time_out_and_retire_their_connection(origin: str) -> None:
    h2c = H2cClient(connect_timeout_ms=2000, max_stream_timeouts_per_connection=2, ping_interval_ms=0)
    try:
        for expected_connections in (1, 0):
            stream = await h2c.open_stream(origin, "POST", "/silent", [])
            await stream.end()
            with pytest.raises(StreamTimeoutError, match="no response headers .* within 100 ms"):
                await stream.response_headers(timeout_ms=100)
            assert h2c.connection_count(origin) == expected_connections
        status, _, _ = await asyncio.wait_for(h2c.request(origin, "POST", "/sink", [], b"fresh"), 5)
        assert status == 200 and h2c.connection_count(origin) == 1
    finally:
        await h2c.aclose()


def _active_streams(client: H2cClient) -> int:
    return sum(connection.active_streams for pool in client._pools.values() for connection in pool.connections)


async def test_a_stream_closed_after_its_request_ended_waits_for_the_response_end_then_frees_its_slot(origin: str) -> None:
    h2c = H2cClient(stream_end_grace_ms=60_000)
    try:
        stream = await h2c.open_stream(origin, "POST", "/hold", [])
        status, _ = await asyncio.wait_for(stream.response_headers(), 5)
        assert status == 200
        await stream.end()  # /hold answers "done" and ends its response only now
        await stream.aclose()  # at once: the response has not ended yet
        assert _active_streams(h2c) == 1 and not stream.finished
        deadline = asyncio.get_running_loop().time() + 5
        while _active_streams(h2c) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert _active_streams(h2c) == 0, "the response's end freed the slot, long before the grace period"
        assert stream.finished and stream._error is None, "it ended normally, without a reset"
    finally:
        await h2c.aclose()


async def test_a_stream_whose_response_never_ends_is_reset_after_the_grace_period(origin: str) -> None:
    h2c = H2cClient(stream_end_grace_ms=1_500)  # room for a loaded machine between the close and the check below
    try:
        stream = await h2c.open_stream(origin, "POST", "/silent", [])
        await stream.end()
        await stream.aclose()
        assert _active_streams(h2c) == 1
        await asyncio.sleep(0.1)
        assert _active_streams(h2c) == 1, "still within the grace period"
        deadline = asyncio.get_running_loop().time() + 5
        while _active_streams(h2c) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert _active_streams(h2c) == 0
        with pytest.raises(StreamClosedError, match="reset by this client"):
            await stream.read()
    finally:
        await h2c.aclose()


def _closed_streams_remembered(client: H2cClient) -> list[int]:
    return [len(connection._h2._closed_streams) for pool in client._pools.values() for connection in pool.connections]


async def test_a_connection_remembers_at_most_max_closed_streams_per_connection(origin: str) -> None:
    """h2 keeps how each closed stream ended, 65,536 of them per connection (11 MiB); the setting bounds that."""
    bounded = H2cClient(max_closed_streams_per_connection=8)
    unbounded = H2cClient()
    try:
        for h2c in (bounded, unbounded):
            for index in range(40):
                status, _, body = await h2c.request(origin, "POST", "/sink", [], f"n{index}".encode())
                assert (status, body) == (200, hashlib.sha256(f"n{index}".encode()).hexdigest().encode())
        assert _closed_streams_remembered(bounded) == [8]
        assert _closed_streams_remembered(unbounded)[0] > 8  # h2's own bound: every one of them so far
    finally:
        await bounded.aclose()
        await unbounded.aclose()


async def test_ends_and_resets_of_several_streams_in_one_turn_leave_in_one_write_and_reach_the_server(origin: str) -> None:
    h2c = H2cClient(max_connections_per_origin=1)
    try:
        streams = [await h2c.open_stream(origin, "POST", "/hold", []) for _ in range(4)]
        for stream in streams:
            assert (await asyncio.wait_for(stream.response_headers(), 5))[0] == 200
        [connection] = [connection for pool in h2c._pools.values() for connection in pool.connections]
        writes: list[bytes] = []
        write = connection._writer.write

        def counting_write(data: bytes) -> None:
            writes.append(bytes(data))
            write(data)

        connection._writer.write = counting_write  # type: ignore[method-assign]  # a spy on this one connection's socket writes
        for stream in streams[:2]:
            await stream.end()  # /hold answers "done" and ends its response once its request ended
        for stream in streams[2:]:
            stream.reset()
        assert writes == [], "nothing is written before the turn of the event loop ends"
        await asyncio.sleep(0)
        assert len(writes) == 1, "two END_STREAMs and two RST_STREAMs in one socket write"
        for stream in streams[:2]:
            body = b""
            while chunk := await asyncio.wait_for(stream.read(), 5):
                body += chunk
            assert body == b"done", "the server saw the request's end"
        deadline = asyncio.get_running_loop().time() + 5
        while _active_streams(h2c) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert _active_streams(h2c) == 0, "the reset streams and the ended ones freed their slots"
    finally:
        await h2c.aclose()
