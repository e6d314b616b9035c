"""wal/hot_metrics.py: the lock-free families expose exactly what prometheus_client's own Counter, Gauge and Histogram expose."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from wal.hot_metrics import HotCounter, HotGauge, HotHistogram

BUCKETS = (0.001, 0.01, 1.0)
OBSERVED = (0.0005, 0.001, 0.002, 0.01, 0.5, 3.0, 1.0)  # two exactly on a bound: `le` counts them in that bucket


def _without_created_values(text: bytes) -> str:
    """The exposition with every `_created` sample's value (a creation time, different per object) masked."""
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", text.decode())


def _fill(registry: CollectorRegistry, hot: bool) -> None:
    counter = (HotCounter if hot else Counter)("requests_total", "Requests.", ["kind", "status"], registry=registry)
    histogram = (
        HotHistogram("duration_seconds", "Durations.", ["kind"], BUCKETS, registry=registry)
        if hot
        else Histogram("duration_seconds", "Durations.", ["kind"], buckets=BUCKETS, registry=registry)
    )
    gauge = (HotGauge if hot else Gauge)("inflight", "In flight.", registry=registry)
    counter.labels("call", "200").inc()
    counter.labels("call", "200").inc(2)
    counter.labels("send", "202").inc()
    for amount in OBSERVED:
        histogram.labels("call").observe(amount)
    histogram.labels("send").observe(0.02)
    gauge.inc()
    gauge.inc()
    gauge.dec()


@pytest.mark.parametrize("render", [generate_latest, generate_openmetrics])
def test_the_exposition_is_the_one_prometheus_clients_own_classes_give(render: object) -> None:
    library, hot = CollectorRegistry(), CollectorRegistry()
    _fill(library, hot=False)
    _fill(hot, hot=True)
    assert callable(render)
    assert _without_created_values(render(hot)) == _without_created_values(render(library))


def test_sample_values_read_back_through_the_registry() -> None:
    registry = CollectorRegistry()
    _fill(registry, hot=True)
    assert registry.get_sample_value("requests_total", {"kind": "call", "status": "200"}) == 3
    assert registry.get_sample_value("duration_seconds_count", {"kind": "call"}) == len(OBSERVED)
    assert registry.get_sample_value("duration_seconds_bucket", {"kind": "call", "le": "0.001"}) == 2
    assert registry.get_sample_value("duration_seconds_bucket", {"kind": "call", "le": "1.0"}) == 6
    assert registry.get_sample_value("duration_seconds_bucket", {"kind": "call", "le": "+Inf"}) == len(OBSERVED)
    assert registry.get_sample_value("duration_seconds_sum", {"kind": "call"}) == pytest.approx(sum(OBSERVED))
    assert registry.get_sample_value("inflight") == 1


def test_wrong_label_count_and_unsorted_buckets_are_refused() -> None:
    registry = CollectorRegistry()
    counter = HotCounter("things_total", "Things.", ["a", "b"], registry=registry)
    with pytest.raises(ValueError, match=r"takes labels \('a', 'b'\)"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="ascending"):
        HotHistogram("bad_seconds", "Bad.", [], (1.0, 0.5), registry=registry)


def test_a_name_taken_twice_in_a_registry_is_refused() -> None:
    registry = CollectorRegistry()
    HotCounter("twice_total", "Once.", registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("twice_total", "Twice.", registry=registry)
