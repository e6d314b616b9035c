"""Helpers for driving duro's SDK endpoints in unit tests: an in-process hypercorn server and hand-built invocation bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import hypercorn.asyncio
from google.protobuf.message import Message
from hypercorn.config import Config

from protocol import FrameDecoder, decode_message, encode_message, pb
from protocol.ids import InvocationId
from tests.processes import free_port

INVOCATION_ID = InvocationId(partition_key=7, uuid=bytes(16))
SERVER_READY_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 10.0


async def serve(app: Any) -> AsyncIterator[str]:
    """Serves `app` with hypercorn on a free port (h2c and HTTP/1.1) and yields its base URL."""
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    server = asyncio.create_task(hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
    try:
        yield base_url
    finally:
        stop.set()
        await asyncio.wait_for(server, SERVER_STOP_TIMEOUT_S)


def invocation_body(body: bytes, *journal: Message, **start_fields: Any) -> bytes:
    """A request body: Start, the Input command carrying `body`, then `journal`."""
    start = pb.StartMessage(id=INVOCATION_ID.to_bytes(), debug_id=str(INVOCATION_ID), known_entries=1 + len(journal), **start_fields)
    messages = [start, pb.InputCommandMessage(value=pb.Value(content=body)), *journal]
    return b"".join(encode_message(message) for message in messages)


def messages_of(body: bytes) -> list[Message]:
    """The protocol messages of a whole response body."""
    decoder = FrameDecoder()
    frames = decoder.feed(body)
    decoder.finish()
    return [decode_message(frame) for frame in frames]


def invoke_headers(version: int = 6) -> dict[str, str]:
    """The content-type/accept headers of an invocation in protocol `version`."""
    content_type = f"application/vnd.restate.invocation.v{version}"
    return {"content-type": content_type, "accept": content_type}
