"""One HTTP request/response exchange with a deployment, over HTTP/2 (h2c) or HTTP/1.1, behind one small interface.

HTTP/2 exchanges are full duplex: the invoker can keep writing (notifications)
while it reads (commands). HTTP/1.1 exchanges send the whole request body
first, then read: request/response mode only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp

from protocol.h2c import H2cClient, H2cError, H2Stream


class ExchangeError(Exception):
    """The transport failed: connection refused or lost, stream reset, timeout. Retry is safe."""


class Exchange(Protocol):
    async def open(self) -> None:
        """Start the request (HTTP/2: send its headers); ExchangeError if the deployment cannot be reached."""
        ...

    async def send(self, data: bytes) -> None: ...

    async def end(self) -> None:
        """Close the request body."""
        ...

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        """The response's status and headers; ExchangeError if they do not come within `timeout_ms` (None: no limit)."""
        ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None:
        """Release the exchange; resets the stream if it is still open."""
        ...


class H2Exchange:
    def __init__(self, client: H2cClient, origin: str, path: str, headers: list[tuple[str, str]]) -> None:
        self._client = client
        self._origin = origin
        self._path = path
        self._headers = headers
        self._stream: H2Stream | None = None

    async def open(self) -> None:
        """Open the stream; its HEADERS go out with the first `send` or `end`."""
        try:
            self._stream = await self._client.open_stream(self._origin, "POST", self._path, self._headers, flush=False)
        except (H2cError, OSError) as exc:
            raise ExchangeError(f"cannot open HTTP/2 stream to {self._origin}{self._path}: {exc}") from exc

    def _opened(self) -> H2Stream:
        assert self._stream is not None, "open() before using the exchange"
        return self._stream

    async def send(self, data: bytes) -> None:
        try:
            await self._opened().send(data)
        except (H2cError, OSError) as exc:
            raise ExchangeError(f"sending to {self._origin}{self._path} failed: {exc}") from exc

    async def end(self) -> None:
        try:
            await self._opened().end()
        except (H2cError, OSError) as exc:
            raise ExchangeError(f"closing the request to {self._origin}{self._path} failed: {exc}") from exc

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        try:
            return await self._opened().response_headers(timeout_ms)
        except (H2cError, OSError) as exc:
            raise ExchangeError(f"no response from {self._origin}{self._path}: {exc}") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self._opened().read()
            except (H2cError, OSError) as exc:
                raise ExchangeError(f"reading from {self._origin}{self._path} failed: {exc}") from exc
            if not chunk:
                return
            yield chunk

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()


class Http1Exchange:
    """HTTP/1.1 via aiohttp: the body is buffered until `end`, then sent in one request."""

    def __init__(self, session: aiohttp.ClientSession, url: str, headers: list[tuple[str, str]]) -> None:
        self._session = session
        self._url = url
        self._headers = headers
        self._body = bytearray()
        self._response: aiohttp.ClientResponse | None = None

    async def open(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        self._body += data

    async def end(self) -> None:
        try:
            self._response = await self._session.post(self._url, data=bytes(self._body), headers=self._headers)
        except (aiohttp.ClientError, OSError) as exc:
            raise ExchangeError(f"HTTP/1.1 request to {self._url} failed: {exc}") from exc

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        assert self._response is not None, "end() sends the request; call it before status()"
        return self._response.status, [(k.lower(), v) for k, v in self._response.headers.items()]

    async def chunks(self) -> AsyncIterator[bytes]:
        assert self._response is not None, "end() sends the request; call it before chunks()"
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise ExchangeError(f"reading from {self._url} failed: {exc}") from exc

    async def close(self) -> None:
        if self._response is not None:
            self._response.release()
