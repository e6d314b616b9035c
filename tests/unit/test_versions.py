"""Tests protocol and manifest version naming, parsing and negotiation."""

from __future__ import annotations

import pytest

from protocol.errors import VersionError
from protocol.versions import (
    DISCOVERY_ACCEPT,
    MAX_SERVICE_PROTOCOL_VERSION,
    MIN_SERVICE_PROTOCOL_VERSION,
    invocation_content_type,
    manifest_content_type,
    negotiate,
    parse_invocation_content_type,
    parse_manifest_content_type,
)


def test_supported_range() -> None:
    assert (MIN_SERVICE_PROTOCOL_VERSION, MAX_SERVICE_PROTOCOL_VERSION) == (5, 7)


@pytest.mark.parametrize("version", [5, 6, 7])
def test_invocation_content_type_round_trip(version: int) -> None:
    content_type = invocation_content_type(version)
    assert content_type == f"application/vnd.restate.invocation.v{version}"
    assert parse_invocation_content_type(content_type) == version
    assert parse_invocation_content_type(content_type.upper() + "; charset=x") == version


@pytest.mark.parametrize("bad", ["application/json", "application/vnd.restate.invocation.v", "", "vnd.restate.invocation.v5x"])
def test_parse_invocation_content_type_rejects(bad: str) -> None:
    with pytest.raises(VersionError, match="expected 'application/vnd.restate.invocation.vN'"):
        parse_invocation_content_type(bad)


@pytest.mark.parametrize(
    ("deployment", "runtime_max", "expected"),
    [((5, 7), 7, 7), ((5, 7), 6, 6), ((5, 6), 7, 6), ((1, 5), 7, 5), ((7, 9), 7, 7), ((5, 9), 99, 7)],
)
def test_negotiate_picks_highest_common(deployment: tuple[int, int], runtime_max: int, expected: int) -> None:
    assert negotiate(deployment[0], deployment[1], runtime_max) == expected


@pytest.mark.parametrize(("deployment", "runtime_max"), [((1, 4), 7), ((8, 9), 7), ((7, 7), 6)])
def test_negotiate_without_overlap_fails(deployment: tuple[int, int], runtime_max: int) -> None:
    with pytest.raises(VersionError, match="no common version"):
        negotiate(deployment[0], deployment[1], runtime_max)


def test_negotiate_rejects_inverted_range() -> None:
    with pytest.raises(VersionError, match="is empty"):
        negotiate(7, 5)


def test_manifest_types_and_accept_header() -> None:
    assert manifest_content_type(4) == "application/vnd.restate.endpointmanifest.v4+json"
    expected_accept = ", ".join(f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (1, 2, 3, 4))
    assert expected_accept == DISCOVERY_ACCEPT
    assert parse_manifest_content_type("application/vnd.restate.endpointmanifest.v3+json") == 3
    with pytest.raises(VersionError, match="not a manifest type"):
        parse_manifest_content_type("application/json")
    with pytest.raises(VersionError, match="manifest version 9"):
        parse_manifest_content_type("application/vnd.restate.endpointmanifest.v9+json")
    with pytest.raises(VersionError, match="expected 1..4"):
        manifest_content_type(0)
