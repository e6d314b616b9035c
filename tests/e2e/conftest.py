"""Fixtures for end-to-end tests: the reference service endpoint (official Python SDK under hypercorn) and its side-effect file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import ServiceEndpoint


@pytest.fixture
def side_effects(tmp_path: Path) -> Path:
    return tmp_path / "side-effects.log"


@pytest.fixture
def official_python_service(tmp_path: Path, side_effects: Path) -> Iterator[ServiceEndpoint]:
    endpoint = ServiceEndpoint(
        "tests.services.official_python:app", tmp_path / "service.log", {"DURO_TEST_SIDE_EFFECTS": str(side_effects)}
    )
    endpoint.start()
    try:
        endpoint.wait_ready()
        yield endpoint
    finally:
        endpoint.stop()
