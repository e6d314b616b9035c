"""Bounds every request body the admin API reads: `max_admin_body_bytes`, or `max_internal_body_bytes` under `/internal/`.

A pure ASGI middleware. A declared `content-length` over the bound is
answered 413 before the app runs; a body that grows past it while being read
makes the read raise `PayloadTooLarge`, which the routes answer as 413. So a
client can no longer make the node hold a 500 MB body in memory.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingress.errors import PayloadTooLarge

INTERNAL_PREFIX = "/internal/"


class BodyLimit:
    """Wraps an ASGI app so that no request body it reads exceeds its bound."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_internal_body_bytes: int, render_error: Callable[[int, str], bytes]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_internal_body_bytes = max_internal_body_bytes
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        internal = scope["path"].startswith(INTERNAL_PREFIX)
        limit, name = (
            (self.max_internal_body_bytes, "max_internal_body_bytes") if internal else (self.max_body_bytes, "max_admin_body_bytes")
        )
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, f"request body of {declared} bytes exceeds {name} ({limit})")
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body exceeds {name} ({limit})")
            return message

        await self.app(scope, bounded_receive, send)

    async def _refuse(self, send: Send, message: str) -> None:
        body = self.render_error(413, message)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
