"""Names the service protocol and manifest versions duro speaks and picks one per deployment.

The invocation request carries `content-type: application/vnd.restate.invocation.vN`;
discovery asks for `application/vnd.restate.endpointmanifest.vN+json`.
"""

from __future__ import annotations

import re
from typing import Final

from protocol.errors import VersionError

MIN_SERVICE_PROTOCOL_VERSION: Final = 5
MAX_SERVICE_PROTOCOL_VERSION: Final = 7
SUPPORTED_SERVICE_PROTOCOL_VERSIONS: Final = range(MIN_SERVICE_PROTOCOL_VERSION, MAX_SERVICE_PROTOCOL_VERSION + 1)

MIN_MANIFEST_VERSION: Final = 1
MAX_MANIFEST_VERSION: Final = 4

_INVOCATION_PREFIX: Final = "application/vnd.restate.invocation.v"
_INVOCATION_RE: Final = re.compile(r"application/vnd\.restate\.invocation\.v([0-9]+)")
_MANIFEST_RE: Final = re.compile(r"application/vnd\.restate\.endpointmanifest\.v([0-9]+)\+json")


def invocation_content_type(version: int) -> str:
    """The content type of an invocation stream of protocol `version`."""
    return f"{_INVOCATION_PREFIX}{version}"


def parse_invocation_content_type(content_type: str) -> int:
    """The protocol version named by an invocation content type.

    Parameters after `;` are ignored. Raises VersionError naming the expected form.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    match = _INVOCATION_RE.fullmatch(media_type)
    if match is None:
        raise VersionError(f"content type {content_type!r} is not a service protocol type; expected '{_INVOCATION_PREFIX}N'")
    return int(match.group(1))


def negotiate(
    deployment_min: int,
    deployment_max: int,
    runtime_max: int = MAX_SERVICE_PROTOCOL_VERSION,
) -> int:
    """The highest protocol version both the deployment and duro support.

    duro supports MIN_SERVICE_PROTOCOL_VERSION..runtime_max (runtime_max lets
    an operator cap the version, e.g. at 6). Raises VersionError if the
    ranges do not overlap.
    """
    if deployment_min > deployment_max:
        raise VersionError(
            f"deployment protocol range {deployment_min}..{deployment_max} is empty; expected minProtocolVersion <= maxProtocolVersion"
        )
    runtime_top = min(runtime_max, MAX_SERVICE_PROTOCOL_VERSION)
    chosen = min(deployment_max, runtime_top)
    if chosen < max(deployment_min, MIN_SERVICE_PROTOCOL_VERSION):
        raise VersionError(
            f"deployment supports protocol versions {deployment_min}..{deployment_max},"
            f" duro supports {MIN_SERVICE_PROTOCOL_VERSION}..{runtime_top}: no common version"
        )
    return chosen


def manifest_content_type(version: int) -> str:
    """The content type of a discovery manifest of `version` (1..4)."""
    if not MIN_MANIFEST_VERSION <= version <= MAX_MANIFEST_VERSION:
        raise VersionError(f"manifest version {version} is unknown; expected {MIN_MANIFEST_VERSION}..{MAX_MANIFEST_VERSION}")
    return f"application/vnd.restate.endpointmanifest.v{version}+json"


MANIFEST_CONTENT_TYPES: Final = tuple(manifest_content_type(v) for v in range(MIN_MANIFEST_VERSION, MAX_MANIFEST_VERSION + 1))

DISCOVERY_ACCEPT: Final = ", ".join(MANIFEST_CONTENT_TYPES)
"""The `accept` header of a discovery request: every manifest version duro reads."""


def parse_manifest_content_type(content_type: str) -> int:
    """The manifest version named by a discovery response content type.

    Raises VersionError if it is not a manifest type of a known version.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    match = _MANIFEST_RE.fullmatch(media_type)
    if match is None:
        raise VersionError(
            f"content type {content_type!r} is not a manifest type; expected 'application/vnd.restate.endpointmanifest.vN+json'"
        )
    version = int(match.group(1))
    if not MIN_MANIFEST_VERSION <= version <= MAX_MANIFEST_VERSION:
        raise VersionError(
            f"manifest version {version} in {content_type!r} is unknown; expected {MIN_MANIFEST_VERSION}..{MAX_MANIFEST_VERSION}"
        )
    return version
