"""Builds the endpoint manifest answered on `GET /discover`, in the manifest version the runtime accepts.

Manifest v2 has names, types, payloads, documentation and metadata; v3 adds
timeouts, retention, lazy state and ingress-private; v4 adds retry policies.
A service using a field its negotiated version lacks is an error, not a
silent omission.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from protocol import MAX_SERVICE_PROTOCOL_VERSION, MIN_SERVICE_PROTOCOL_VERSION, manifest_content_type
from protocol.manifest import (
    EndpointManifest,
    HandlerType,
    InputPayload,
    OutputPayload,
    ProtocolMode,
    RetryPolicyOnMaxAttempts,
    ServiceType,
)
from protocol.manifest import Handler as ManifestHandler
from protocol.manifest import Service as ManifestService
from sdk._handler import Handler, HandlerOptions
from sdk._options import InvocationRetryPolicy
from sdk._service import AnyService, ServiceOptions

MIN_SUPPORTED_MANIFEST_VERSION = 2
MAX_SUPPORTED_MANIFEST_VERSION = 4
_V3_FIELDS = (
    "inactivity_timeout",
    "abort_timeout",
    "journal_retention",
    "idempotency_retention",
    "workflow_completion_retention",
    "enable_lazy_state",
    "ingress_private",
)
_V4_FIELDS = (
    "retry_policy_initial_interval",
    "retry_policy_max_interval",
    "retry_policy_max_attempts",
    "retry_policy_exponentiation_factor",
    "retry_policy_on_max_attempts",
)
_SERVICE_TYPES = {"service": ServiceType.SERVICE, "object": ServiceType.VIRTUAL_OBJECT, "workflow": ServiceType.WORKFLOW}
_HANDLER_TYPES = {"exclusive": HandlerType.EXCLUSIVE, "shared": HandlerType.SHARED, "workflow": HandlerType.WORKFLOW}


class ManifestVersionError(ValueError):
    """A service uses a manifest field that the negotiated manifest version does not have."""


def negotiate_manifest_version(accept: str | None) -> int | None:
    """The manifest version to answer for an `accept` header; None if none is acceptable.

    No header means v2 (what the official SDKs assume); `*/*` means the newest.
    """
    if accept is None:
        return MIN_SUPPORTED_MANIFEST_VERSION
    for version in range(MAX_SUPPORTED_MANIFEST_VERSION, MIN_SUPPORTED_MANIFEST_VERSION - 1, -1):
        if manifest_content_type(version) in accept:
            return version
    if "*/*" in accept:
        return MAX_SUPPORTED_MANIFEST_VERSION
    return None


def manifest_json(services: Iterable[AnyService], version: int, protocol_mode: ProtocolMode) -> bytes:
    """The manifest as JSON bytes; raises ManifestVersionError if a service needs a newer version."""
    manifest = build_manifest(services, protocol_mode)
    _check_fields_allowed(manifest, version)
    return manifest.to_json_bytes()


def build_manifest(services: Iterable[AnyService], protocol_mode: ProtocolMode) -> EndpointManifest:
    """The endpoint manifest of `services`."""
    return EndpointManifest(
        protocol_mode=protocol_mode,
        min_protocol_version=MIN_SERVICE_PROTOCOL_VERSION,
        max_protocol_version=MAX_SERVICE_PROTOCOL_VERSION,
        services=[_service(service) for service in services],
    )


def _service(service: AnyService) -> ManifestService:
    options: ServiceOptions = service.options
    return ManifestService(
        name=service.name,
        ty=_SERVICE_TYPES[service.kind],
        handlers=[_handler(handler) for handler in service.handlers.values()],
        documentation=options.description,
        metadata=options.metadata,
        inactivity_timeout=_ms(options.inactivity_timeout),
        abort_timeout=_ms(options.abort_timeout),
        journal_retention=_ms(options.journal_retention),
        idempotency_retention=_ms(options.idempotency_retention),
        enable_lazy_state=options.enable_lazy_state if service.kind != "service" else None,
        ingress_private=options.ingress_private,
        **_retry_fields(options.invocation_retry_policy),
    )


def _handler(handler: Handler) -> ManifestHandler:
    options: HandlerOptions = handler.options
    return ManifestHandler(
        name=handler.name,
        ty=_HANDLER_TYPES[handler.kind] if handler.kind is not None else None,
        input=_input(handler),
        output=_output(handler),
        documentation=options.description,
        metadata=options.metadata,
        inactivity_timeout=_ms(options.inactivity_timeout),
        abort_timeout=_ms(options.abort_timeout),
        journal_retention=_ms(options.journal_retention),
        idempotency_retention=_ms(options.idempotency_retention),
        workflow_completion_retention=_ms(options.workflow_retention),
        enable_lazy_state=options.enable_lazy_state,
        ingress_private=options.ingress_private,
        **_retry_fields(options.invocation_retry_policy),
    )


def _input(handler: Handler) -> InputPayload:
    if handler.input_type.is_void:
        return InputPayload()
    return InputPayload(required=False, content_type=handler.accept, json_schema=handler.input_type.json_schema())


def _output(handler: Handler) -> OutputPayload:
    if handler.output_type.is_void:
        return OutputPayload(set_content_type_if_empty=False)
    return OutputPayload(
        content_type=handler.content_type,
        set_content_type_if_empty=False,
        json_schema=handler.output_type.json_schema(),
    )


def _retry_fields(policy: InvocationRetryPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {}
    on_max = policy.on_max_attempts
    return {
        "retry_policy_initial_interval": _ms(policy.initial_interval),
        "retry_policy_max_interval": _ms(policy.max_interval),
        "retry_policy_max_attempts": policy.max_attempts,
        "retry_policy_exponentiation_factor": policy.exponentiation_factor,
        "retry_policy_on_max_attempts": RetryPolicyOnMaxAttempts(on_max.upper()) if on_max else None,
    }


def _check_fields_allowed(manifest: EndpointManifest, version: int) -> None:
    forbidden: tuple[str, ...] = ()
    if version < 4:
        forbidden += _V4_FIELDS
    if version < 3:
        forbidden += _V3_FIELDS
    for service in manifest.services:
        owners: list[ManifestService | ManifestHandler] = [service, *service.handlers]
        for owner in owners:
            for field_name in forbidden:
                if getattr(owner, field_name, None) is not None:
                    raise ManifestVersionError(
                        f"{owner.name} sets {field_name}, which manifest v{version} lacks; the runtime must accept a newer manifest version"
                    )


def _ms(duration: timedelta | None) -> int | None:
    return None if duration is None else int(duration.total_seconds() * 1000)
