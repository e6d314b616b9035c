"""Optional bearer-token authentication of the ingress and the admin API (beyond Restate's open-source server; off by default).

With `ingress.admin_token` set, every admin request but `GET /health` (the
liveness probe) must carry `Authorization: Bearer <token>`; the `restate` CLI
sends it from `RESTATE_AUTH_TOKEN` (or an environment's `bearer_token`), and
nodes of one cluster send it to each other's `/internal/...`. With
`ingress.ingress_token` set, the same holds for the ingress, but for
`GET /restate/health` (the readiness probe); the header is then the node's
credential and is not forwarded to the services. A missing or wrong token is
answered 401 with `WWW-Authenticate: Bearer`, before anything is read or recorded.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

AUTHORIZATION = b"authorization"


class BearerToken:
    """One configured token and the paths a probe may reach without it."""

    def __init__(self, token: str, open_paths: frozenset[str]) -> None:
        assert token, "an empty token would admit anyone"
        self._expected = b"Bearer " + token.encode()
        self.open_paths = open_paths

    def admits(self, scope: Scope) -> bool:
        """Whether the request carries the token (or asks for an open path with GET)."""
        if scope["method"] == "GET" and scope["path"] in self.open_paths:
            return True
        for name, value in scope["headers"]:
            if name == AUTHORIZATION:
                return hmac.compare_digest(value, self._expected)
        return False

    def header(self) -> dict[str, str]:
        """The header a node sends to another node of its cluster."""
        return {"authorization": self._expected.decode()}


def unauthorized_message(what: str) -> str:
    return f"the {what} requires 'Authorization: Bearer <token>'; the request had none or another token"


async def refuse(send: Send, body: bytes) -> None:
    """Answer 401 with `WWW-Authenticate: Bearer` and `body`."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="duro"'),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequireToken:
    """ASGI middleware: refuse HTTP requests without the token (the admin API's)."""

    def __init__(self, app: ASGIApp, token: BearerToken | None, render_error: Callable[[int, str], bytes]) -> None:
        self.app = app
        self.token = token
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.token is not None and not self.token.admits(scope):
            await refuse(send, self.render_error(401, unauthorized_message("admin API")))
            return
        await self.app(scope, receive, send)
