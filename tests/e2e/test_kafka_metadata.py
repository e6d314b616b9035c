"""The metadata topic on a real broker: nodes see each other's writes, every wait is bounded, and a dead reader is noticed."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.processes import free_port
from wal.kafka_metadata import KafkaMetadata
from wal.log import LogError


def new_topic() -> str:
    return f"duro-metadata-test-{uuid.uuid4().hex[:12]}"


async def test_a_write_on_one_node_reaches_the_other_and_its_watchers(kafka_bootstrap: str) -> None:
    topic = new_topic()
    writer, reader = KafkaMetadata(kafka_bootstrap, topic), KafkaMetadata(kafka_bootstrap, topic)
    await writer.open()
    await reader.open()
    seen = asyncio.Queue[tuple[str, bytes | None]]()
    reader.watch(lambda key, value: seen.put_nowait((key, value)))
    try:
        await writer.put("registry", b"v1")
        assert writer.values["registry"] == b"v1", "put returns once the writer has read its own write back"
        async with asyncio.timeout(20):
            assert await seen.get() == ("registry", b"v1")
        await writer.put("registry", None)
        async with asyncio.timeout(20):
            assert await seen.get() == ("registry", None)
        assert "registry" not in reader.values
    finally:
        await writer.close()
        await reader.close()


async def test_open_against_an_unreachable_bootstrap_ends_within_its_bound_naming_it() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    metadata = KafkaMetadata(bootstrap, new_topic(), open_timeout_ms=1_500)
    started = time.monotonic()
    with pytest.raises(LogError, match=rf"at {bootstrap} (was not readable within open_timeout_ms=1500|could not be opened)"):
        await metadata.open()
    assert time.monotonic() - started < 15, "open is bounded by open_timeout_ms (plus the clients' own shutdown)"


async def test_a_dead_reader_fails_puts_at_once_and_is_reported(kafka_bootstrap: str) -> None:
    metadata = KafkaMetadata(kafka_bootstrap, new_topic(), put_timeout_ms=60_000)
    await metadata.open()
    deaths: list[BaseException | None] = []
    died = asyncio.Event()

    def on_death(task: asyncio.Task[None]) -> None:
        deaths.append(None if task.cancelled() else task.exception())
        died.set()

    metadata.on_reader_death(on_death)
    try:
        assert metadata._consumer is not None
        await metadata._consumer.stop()  # the reader's next fetch fails: the way a broken consumer ends it
        async with asyncio.timeout(20):
            await died.wait()
        assert deaths and deaths[0] is not None, "the reader died of an error, not of a cancel"
        started = time.monotonic()
        with pytest.raises(LogError, match="the reader of metadata topic .* died"):
            await metadata.put("registry", b"v2")
        assert time.monotonic() - started < 5, "a put does not wait put_timeout_ms for a reader that is gone"
    finally:
        await metadata.close()
