"""The `Log` conformance suite of tests/unit/test_log_conformance.py, run against `KafkaLog` on a real broker.

The suite's tests are imported as they are; only the `backend` fixture differs:
every log a test opens is a new topic on the session's broker.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.unit.test_log_conformance import *  # the shared suite: its tests and fixtures
from tests.unit.test_log_conformance import Backend
from wal.kafka import KafkaLog, KafkaLogSettings
from wal.log import Log

SETTINGS = KafkaLogSettings(connect_timeout_ms=10_000, request_timeout_ms=10_000)


@pytest.fixture
def backend(kafka_bootstrap: str) -> Backend:
    async def open_kafka(directory: Path, partition_count: int) -> Log:
        return await KafkaLog.open(kafka_bootstrap, f"conformance-{uuid.uuid4().hex}", partition_count, SETTINGS)

    return Backend("kafka", open_kafka)
