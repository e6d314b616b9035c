"""What the invoker needs to know about deployments, as an interface the node's registry implements.

The partition worker does not import the ingress (which owns the registry);
the process wiring hands the invoker an object with these methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from protocol.retention import InvocationRetention
from wal.records import HandlerKind, RetryPolicy, ServiceType


@dataclass(frozen=True, slots=True)
class DeploymentEndpoint:
    """How to reach one registered deployment."""

    deployment_id: str
    uri: str
    additional_headers: dict[str, str] = field(default_factory=dict)
    use_http_11: bool = False
    bidirectional: bool = True  # the deployment advertised BIDI_STREAM
    min_protocol_version: int = 5
    max_protocol_version: int = 7


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """What the runtime must know about a handler to route calls and build Start messages."""

    service_type: ServiceType
    handler_kind: HandlerKind | None
    lazy_state: bool = False
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """What the callee of a call made by a handler gets, written into the call's record: its retry policy and retention."""

    retry_policy: RetryPolicy
    retention: InvocationRetention


class DeploymentDirectory(Protocol):
    def deployment(self, deployment_id: str) -> DeploymentEndpoint | None: ...

    def latest_deployment_for(self, service: str) -> DeploymentEndpoint | None: ...

    def handler_info(self, service: str, handler: str) -> HandlerInfo | None: ...

    def call_policy(self, service: str, handler: str, has_idempotency_key: bool) -> CallPolicy | None:
        """The policy of a call to this handler (None if it is not registered): the ingress's rule, applied at write time."""
        ...
