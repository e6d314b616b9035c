"""Fixtures shared by every test folder: a real Kafka broker for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.kafka_broker import KafkaBroker, unavailable_reason

# Property tests keep no example database in the checkout; a failure prints its example, which reproduces it.
settings.register_profile("duro", database=None, deadline=None)
settings.load_profile("duro")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ "127.0.0.1:PORT" of a broker started once per session; tests using it are skipped only if the broker was not fetched."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
