"""Fixtures for end-to-end tests: a `duro serve` process and service endpoints, all real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import DuroServer, ServiceEndpoint


@pytest.fixture
def side_effects(tmp_path: Path) -> Path:
    return tmp_path / "side-effects.log"


@pytest.fixture
def official_python_service(tmp_path: Path, side_effects: Path) -> Iterator[ServiceEndpoint]:
    endpoint = ServiceEndpoint("tests.services.official_python:app", tmp_path / "service.log", {"DURO_TEST_SIDE_EFFECTS": str(side_effects)})
    endpoint.start()
    try:
        endpoint.wait_ready()
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def duro(tmp_path: Path) -> Iterator[DuroServer]:
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log")
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
