"""Prometheus metrics of the ingress, the admin API and Kafka subscriptions: requests by route kind and status, consumed records and lag."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from wal.hot_metrics import CounterSeries, HistogramSeries, HotCounter, HotHistogram

INGRESS_REQUESTS_TOTAL = "duro_ingress_requests_total"
INGRESS_REQUEST_DURATION_SECONDS = "duro_ingress_request_duration_seconds"
ADMIN_REQUESTS_TOTAL = "duro_admin_requests_total"
SUBSCRIPTION_RECORDS_TOTAL = "duro_subscription_records_total"
SUBSCRIPTION_PROBLEM_RECORDS_TOTAL = "duro_subscription_problem_records_total"
SUBSCRIPTION_LAG_RECORDS = "duro_subscription_lag_records"
SUBSCRIPTION_PENDING_INVOCATIONS = "duro_subscription_pending_invocations"
SUBSCRIPTION_PAUSED = "duro_subscription_paused"
SUBSCRIPTION_CONSUMER_RESTARTS_TOTAL = "duro_subscription_consumer_restarts_total"

_DURATION_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

ingress_requests = HotCounter(
    INGRESS_REQUESTS_TOTAL,
    "HTTP requests answered by the ingress, by route kind (call, send, attach, output, awakeable, health, other) and status code.",
    ["kind", "status"],
)
ingress_request_duration = HotHistogram(
    INGRESS_REQUEST_DURATION_SECONDS,
    "Time from request arrival to response at the ingress, by route kind and status code.",
    ["kind", "status"],
    _DURATION_BUCKETS_SECONDS,
)
admin_requests = Counter(
    ADMIN_REQUESTS_TOTAL,
    "HTTP requests answered by the admin API, by route kind and status code.",
    ["kind", "status"],
)

subscription_records = Counter(
    SUBSCRIPTION_RECORDS_TOTAL,
    "Kafka records of a subscription this node turned into durable Invoke records, by subscription, topic and partition.",
    ["subscription", "topic", "partition"],
)
subscription_problem_records = Counter(
    SUBSCRIPTION_PROBLEM_RECORDS_TOTAL,
    "Kafka records that could not be used as they are, by reason: invalid_json (delivered; the handler fails it),"
    " key_not_utf8 and too_large (skipped).",
    ["subscription", "topic", "partition", "reason"],
)
subscription_lag = Gauge(
    SUBSCRIPTION_LAG_RECORDS,
    "Records of a topic partition this node consumes that are not yet durable invocations (end offset minus position).",
    ["subscription", "topic", "partition"],
)
subscription_pending = Gauge(
    SUBSCRIPTION_PENDING_INVOCATIONS,
    "Invocations a subscription started from this node that have not completed (backpressure pauses the consumer at the bound).",
    ["subscription"],
)
subscription_paused = Gauge(
    SUBSCRIPTION_PAUSED,
    "1 while a subscription's consumer on this node is paused because too many of its invocations are pending, else 0.",
    ["subscription"],
)
subscription_consumer_restarts = Counter(
    SUBSCRIPTION_CONSUMER_RESTARTS_TOTAL,
    "Times a subscription's consumer on this node failed and was restarted.",
    ["subscription"],
)


_ingress_series: dict[
    tuple[str, int], tuple[CounterSeries, HistogramSeries]
] = {}  # (kind, status) -> its two series, bound once (one lookup per request)


def observe_ingress(kind: str, status: int, duration_seconds: float) -> None:
    series = _ingress_series.get((kind, status))
    if series is None:
        labels = (kind, str(status))
        series = _ingress_series[(kind, status)] = (ingress_requests.labels(*labels), ingress_request_duration.labels(*labels))
    series[0].inc()
    series[1].observe(duration_seconds)


def observe_admin(kind: str, status: int) -> None:
    admin_requests.labels(kind, str(status)).inc()


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The registry in Prometheus text format, with its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
