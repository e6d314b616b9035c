"""Adapts the ingress's deployment registry to the invoker's `DeploymentDirectory` interface."""

from __future__ import annotations

from ingress.registry import Deployment, DerivedCache, Registry, ResolvedHandler
from ingress.settings import IngressSettings
from partition_worker.deployments import CallPolicy, DeploymentEndpoint, HandlerInfo
from wal.records import RetryPolicy


class RegistryDirectory:
    """The invoker asks for every attempt: each answer is made once per registry object it comes from (`DerivedCache`)."""

    def __init__(self, registry: Registry, ingress_settings: IngressSettings, default_retry_policy: RetryPolicy) -> None:
        self._registry = registry
        self._ingress_settings = ingress_settings
        self._default_retry_policy = default_retry_policy
        self._endpoints: DerivedCache[Deployment, DeploymentEndpoint] = DerivedCache(_endpoint)
        self._handler_infos: DerivedCache[ResolvedHandler, HandlerInfo] = DerivedCache(_handler_info)

    def call_policy(self, service: str, handler: str, has_idempotency_key: bool) -> CallPolicy | None:
        resolved = self._registry.resolve(service, handler)
        if resolved is None:
            return None
        return CallPolicy(
            resolved.retry_policy(self._default_retry_policy),
            resolved.retention(self._ingress_settings.retention_defaults, has_idempotency_key),
        )

    def deployment(self, deployment_id: str) -> DeploymentEndpoint | None:
        deployment = self._registry.deployment(deployment_id)
        return self._endpoints.get(deployment.id, deployment) if deployment is not None else None

    def latest_deployment_for(self, service: str) -> DeploymentEndpoint | None:
        deployment = self._registry.latest_deployment_for(service)
        return self._endpoints.get(deployment.id, deployment) if deployment is not None else None

    def handler_info(self, service: str, handler: str) -> HandlerInfo | None:
        resolved = self._registry.resolve(service, handler)
        return self._handler_infos.get((service, handler), resolved) if resolved is not None else None


def _handler_info(resolved: ResolvedHandler) -> HandlerInfo:
    handler_options = resolved.handler.options
    service_options = resolved.service.options
    lazy = handler_options.enable_lazy_state if handler_options.enable_lazy_state is not None else service_options.enable_lazy_state
    return HandlerInfo(
        service_type=resolved.service_type,
        handler_kind=resolved.kind,
        lazy_state=bool(lazy),
        inactivity_timeout_ms=handler_options.inactivity_timeout_ms or service_options.inactivity_timeout_ms,
        abort_timeout_ms=handler_options.abort_timeout_ms or service_options.abort_timeout_ms,
    )


def _endpoint(deployment: Deployment) -> DeploymentEndpoint:
    return DeploymentEndpoint(
        deployment_id=deployment.id,
        uri=deployment.uri,
        additional_headers=dict(deployment.additional_headers),
        use_http_11=deployment.use_http_11,
        bidirectional=deployment.protocol_mode == "BIDI_STREAM",
        min_protocol_version=deployment.min_protocol_version,
        max_protocol_version=deployment.max_protocol_version,
    )
