"""Models the endpoint manifest a deployment returns from `GET /discover` and validates it.

Field names on the wire are camelCase (`protocolMode`, `minProtocolVersion`);
the models expose them in snake_case and serialize back with
`model_dump(by_alias=True, exclude_none=True)`. Unknown fields are kept, so a
newer SDK's manifest survives a round trip through duro.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from protocol.errors import ManifestError, VersionError
from protocol.versions import (
    MAX_SERVICE_PROTOCOL_VERSION,
    MIN_SERVICE_PROTOCOL_VERSION,
    parse_manifest_content_type,
)

DEFAULT_INPUT_CONTENT_TYPE = "*/*"
DEFAULT_OUTPUT_CONTENT_TYPE = "application/json"


class ProtocolMode(enum.StrEnum):
    """How the runtime talks to the deployment."""

    BIDI_STREAM = "BIDI_STREAM"
    REQUEST_RESPONSE = "REQUEST_RESPONSE"


class ServiceType(enum.StrEnum):
    """The kind of a service: stateless, keyed object, or workflow."""

    SERVICE = "SERVICE"
    VIRTUAL_OBJECT = "VIRTUAL_OBJECT"
    WORKFLOW = "WORKFLOW"


class HandlerType(enum.StrEnum):
    """The access mode of a handler of a virtual object or workflow."""

    EXCLUSIVE = "EXCLUSIVE"
    SHARED = "SHARED"
    WORKFLOW = "WORKFLOW"


class RetryPolicyOnMaxAttempts(enum.StrEnum):
    """What happens to an invocation once its retries are used up."""

    PAUSE = "PAUSE"
    KILL = "KILL"


class _ManifestModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
    )


class InputPayload(_ManifestModel):
    """What a handler accepts. An unset content_type means no body is expected."""

    required: bool | None = None
    content_type: str | None = None
    json_schema: Any = None


class OutputPayload(_ManifestModel):
    """What a handler returns and which content type the ingress sets."""

    content_type: str | None = None
    set_content_type_if_empty: bool | None = None
    json_schema: Any = None


class _InvocationOptions(_ManifestModel):
    """Options a service or a handler may set; durations are milliseconds (manifest v3+)."""

    documentation: str | None = None
    metadata: dict[str, str] | None = None
    inactivity_timeout: int | None = Field(default=None, ge=0)
    abort_timeout: int | None = Field(default=None, ge=0)
    journal_retention: int | None = Field(default=None, ge=0)
    idempotency_retention: int | None = Field(default=None, ge=0)
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    retry_policy_initial_interval: int | None = Field(default=None, ge=0)
    retry_policy_max_interval: int | None = Field(default=None, ge=0)
    retry_policy_max_attempts: int | None = Field(default=None, ge=0)
    retry_policy_exponentiation_factor: float | None = None
    retry_policy_on_max_attempts: RetryPolicyOnMaxAttempts | None = None


class Handler(_InvocationOptions):
    """One handler of a service."""

    name: str
    ty: HandlerType | None = None
    input: InputPayload | None = None
    output: OutputPayload | None = None
    workflow_completion_retention: int | None = Field(default=None, ge=0)

    @property
    def input_or_default(self) -> InputPayload:
        """The declared input, or the schema's default (any content type, optional body)."""
        if self.input is not None:
            return self.input
        return InputPayload(required=False, content_type=DEFAULT_INPUT_CONTENT_TYPE)

    @property
    def output_or_default(self) -> OutputPayload:
        """The declared output, or the schema's default (JSON, no content type if empty)."""
        if self.output is not None:
            return self.output
        return OutputPayload(content_type=DEFAULT_OUTPUT_CONTENT_TYPE, set_content_type_if_empty=False)


class Service(_InvocationOptions):
    """One service of a deployment, with its handlers."""

    name: str
    ty: ServiceType
    handlers: list[Handler]


class EndpointManifest(_ManifestModel):
    """The whole discovery response of a deployment."""

    protocol_mode: ProtocolMode
    min_protocol_version: int = Field(ge=1)
    max_protocol_version: int = Field(ge=1)
    lambda_compression: str | None = None
    services: list[Service]

    def to_json_bytes(self) -> bytes:
        """The manifest as the deployment would send it (camelCase, no nulls)."""
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True)).encode()


def parse_manifest(body: bytes, content_type: str) -> EndpointManifest:
    """Validates a discovery response and returns its manifest.

    Raises ManifestError whose reason names what is wrong: a content type that
    is not a manifest type, a body that is not JSON, a missing or invalid
    field, or a protocol version range without overlap with duro's.
    """
    _check_content_type(content_type)
    document = _load_json(body)
    manifest = _validate(document)
    _check_versions(manifest)
    return manifest


def _check_content_type(content_type: str) -> None:
    try:
        parse_manifest_content_type(content_type)
    except VersionError as error:
        raise ManifestError(f"content-type is not a manifest type: {error}") from None


def _load_json(body: bytes) -> Any:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ManifestError(f"body is JSON {type(document).__name__}, expected an object")
    return document


def _validate(document: dict[str, Any]) -> EndpointManifest:
    try:
        return EndpointManifest.model_validate(document)
    except ValidationError as error:
        raise ManifestError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    problems = [_describe_one(detail) for detail in error.errors()]
    return "invalid manifest: " + "; ".join(problems)


def _describe_one(detail: Any) -> str:
    location = ".".join(str(part) for part in detail["loc"])
    if detail["type"] == "missing":
        return f"missing {location}"
    return f"{location}: {detail['msg']}"


def _check_versions(manifest: EndpointManifest) -> None:
    low, high = manifest.min_protocol_version, manifest.max_protocol_version
    if low > high:
        raise ManifestError(f"minProtocolVersion {low} is greater than maxProtocolVersion {high}")
    if high < MIN_SERVICE_PROTOCOL_VERSION or low > MAX_SERVICE_PROTOCOL_VERSION:
        raise ManifestError(
            f"protocol versions {low}..{high} do not overlap the supported {MIN_SERVICE_PROTOCOL_VERSION}..{MAX_SERVICE_PROTOCOL_VERSION}"
        )
