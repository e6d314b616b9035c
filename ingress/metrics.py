"""Prometheus metrics of the ingress and the admin API: request counts and durations by route kind and status."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

INGRESS_REQUESTS_TOTAL = "duro_ingress_requests_total"
INGRESS_REQUEST_DURATION_SECONDS = "duro_ingress_request_duration_seconds"
ADMIN_REQUESTS_TOTAL = "duro_admin_requests_total"
SUBSCRIPTION_LAG_RECORDS = "duro_subscription_lag_records"

_DURATION_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

ingress_requests = Counter(
    INGRESS_REQUESTS_TOTAL,
    "HTTP requests answered by the ingress, by route kind (call, send, attach, output, awakeable, health, other) and status code.",
    ["kind", "status"],
)
ingress_request_duration = Histogram(
    INGRESS_REQUEST_DURATION_SECONDS,
    "Time from request arrival to response at the ingress, by route kind and status code.",
    ["kind", "status"],
    buckets=_DURATION_BUCKETS_SECONDS,
)
admin_requests = Counter(
    ADMIN_REQUESTS_TOTAL,
    "HTTP requests answered by the admin API, by route kind and status code.",
    ["kind", "status"],
)

subscription_lag = Gauge(
    SUBSCRIPTION_LAG_RECORDS,
    "Records of a subscribed Kafka topic partition not yet turned into invocations (set by the Kafka ingress once it exists:"
    " `observe_subscription_lag`).",
    ["subscription", "topic", "partition"],
)


def observe_subscription_lag(subscription: str, topic: str, partition: int, lag_records: int) -> None:
    """The hook for Kafka subscriptions: call with the consumer's lag whenever it is known."""
    subscription_lag.labels(subscription, topic, str(partition)).set(lag_records)


def observe_ingress(kind: str, status: int, duration_seconds: float) -> None:
    ingress_requests.labels(kind, str(status)).inc()
    ingress_request_duration.labels(kind, str(status)).observe(duration_seconds)


def observe_admin(kind: str, status: int) -> None:
    admin_requests.labels(kind, str(status)).inc()


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The registry in Prometheus text format, with its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
