"""Fixtures for end-to-end tests: the reference service endpoint (official Python SDK under hypercorn) and its side-effect file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import DuroServer, ServiceEndpoint


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


@contextlib.contextmanager
def registered_duro(
    tmp_path: Path, endpoint: ServiceEndpoint, env: dict[str, str] | None = None, partitions: int = 4
) -> Iterator[DuroServer]:
    """`duro serve` with `env`, the endpoint registered; stopped on exit."""
    server = DuroServer(tmp_path / "data", tmp_path / "duro.log", partitions=partitions, env=env or {})
    server.start()
    try:
        server.wait_ready()
        server.register(endpoint.uri)
        yield server
    finally:
        server.stop()
