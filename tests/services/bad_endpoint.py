"""A deployment that breaks the service protocol, for tests of how duro copes.

`GET /discover` answers a valid manifest (service `Bad`, handlers `garbage` and
`wrong_version`); `POST /invoke/Bad/garbage` answers 200 with bytes that are
not protocol frames; `/invoke/Bad/wrong_version` answers 415. `GET /not-a-manifest/discover`
answers HTML. Each invoke is counted in the side-effect file.
"""

from __future__ import annotations

import json
import os
from typing import Any

MANIFEST = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 7,
    "services": [
        {
            "name": "Bad",
            "ty": "SERVICE",
            "handlers": [
                {
                    "name": "garbage",
                    "input": {"required": False, "contentType": "application/json"},
                    "output": {"contentType": "application/json"},
                },
                {
                    "name": "wrong_version",
                    "input": {"required": False, "contentType": "application/json"},
                    "output": {"contentType": "application/json"},
                },
            ],
        }
    ],
}


def _record(line: str) -> None:
    path = os.environ.get("DURO_TEST_SIDE_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as sink:
            sink.write(line + "\n")


async def _drain(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.endswith("/not-a-manifest/discover"):
        await _respond(send, 200, "text/html", b"<html>hello</html>")
    elif path.endswith("/discover"):
        await _respond(send, 200, "application/vnd.restate.endpointmanifest.v2+json", json.dumps(MANIFEST).encode())
    elif path.endswith("/invoke/Bad/garbage"):
        _record("invoke garbage")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/vnd.restate.invocation.v6")]})
        await send({"type": "http.response.body", "body": b"\x77\x77\x00\x00\x00\x00\x00\x03abc", "more_body": False})
        await _drain(receive)
    elif path.endswith("/invoke/Bad/wrong_version"):
        _record("invoke wrong_version")
        await _respond(send, 415, "text/plain", b"unsupported protocol version")
    else:
        await _respond(send, 404, "text/plain", b"not found")


async def _respond(send: Any, status: int, content_type: str, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type.encode())]})
    await send({"type": "http.response.body", "body": body})
