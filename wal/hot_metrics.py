"""Counters, gauges and histograms for the hot path: plain numbers updated without a lock, read by a Prometheus collector at scrape time.

prometheus_client guards every sample with a `threading.Lock`, and its
histogram walks its buckets in Python with two locked increments per
observation; an invocation updated about 16 of them (the ingress, the invoker,
the log), a few percent of a request's CPU. These families keep each series'
numbers in plain attributes and lists (a histogram finds its bucket with
`bisect`), and hand Prometheus the same families, names, labels, help texts
and samples (`_total`, `_bucket`, `_count`, `_sum`, `_created`) as the
library's own classes would when it collects the registry.

A series is updated by one thread only: the event loop of the process that
owns it (the ingress, the invoker and the log's settling all run there). A
scrape on another thread reads numbers a concurrent update may be about to
change, which a scrape of the library's own metrics could see as well.
They live in `wal/` because it is the package every other one imports.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import INF, floatToGoString


class CounterSeries:
    """One labelled series of a `HotCounter`."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        assert amount >= 0, f"a counter only grows: inc({amount})"
        self.value += amount


class GaugeSeries:
    """One labelled series of a `HotGauge`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class HistogramSeries:
    """One labelled series of a `HotHistogram`: a count per bucket (not cumulative; the collector sums them) and the sum."""

    __slots__ = ("_upper_bounds", "counts", "created", "sum")

    def __init__(self, upper_bounds: tuple[float, ...]) -> None:
        self._upper_bounds = upper_bounds
        self.counts = [0] * len(upper_bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """Count `amount` in the first bucket whose upper bound is at least `amount` (the last bound is +Inf)."""
        self.sum += amount
        self.counts[bisect_left(self._upper_bounds, amount)] += 1


SeriesT = TypeVar("SeriesT")


class _HotFamily(Collector, Generic[SeriesT]):
    """A metric family: its series by label values, registered in a registry as a collector."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry | None) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], SeriesT] = {}
        if not self._labelnames:
            self._series[()] = self._new_series()
        if registry is not None:
            registry.register(self)

    def _new_series(self) -> SeriesT:
        raise NotImplementedError

    def labels(self, *values: str) -> SeriesT:
        """The series of these label values (in `labelnames` order), made on first use."""
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}, got values {values}")
            series = self._series[values] = self._new_series()
        return series

    def _metric(self) -> Metric:
        return Metric(self._name, self._documentation, self.kind)

    def describe(self) -> Iterator[Metric]:
        yield self._metric()

    def _labelled(self) -> list[tuple[dict[str, str], SeriesT]]:
        return [(dict(zip(self._labelnames, values, strict=True)), series) for values, series in list(self._series.items())]


class HotCounter(_HotFamily[CounterSeries]):
    """A counter family; `name` without the `_total` suffix Prometheus adds (as `prometheus_client.Counter` strips it)."""

    kind = "counter"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1) -> None:
        """Increment the family's only series (a family without labels)."""
        self._series[()].inc(amount)

    def collect(self) -> Iterator[Metric]:
        metric = self._metric()
        for labels, series in self._labelled():
            metric.samples.append(Sample(f"{self._name}_total", labels, series.value))
            metric.samples.append(Sample(f"{self._name}_created", labels, series.created))
        yield metric


class HotGauge(_HotFamily[GaugeSeries]):
    """A gauge family."""

    kind = "gauge"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        super().__init__(name, documentation, labelnames, registry)

    def _new_series(self) -> GaugeSeries:
        return GaugeSeries()

    def inc(self, amount: float = 1) -> None:
        self._series[()].inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._series[()].dec(amount)

    def collect(self) -> Iterator[Metric]:
        metric = self._metric()
        metric.samples.extend(Sample(self._name, labels, series.value) for labels, series in self._labelled())
        yield metric


class HotHistogram(_HotFamily[HistogramSeries]):
    """A histogram family with fixed `buckets` (ascending upper bounds; +Inf is added)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = tuple(float(bound) for bound in buckets)
        if list(bounds) != sorted(bounds) or not bounds:
            raise ValueError(f"{name}: buckets must be given in ascending order, got {buckets}")
        self._upper_bounds = bounds if bounds[-1] == INF else (*bounds, INF)
        self._bucket_labels = tuple(floatToGoString(bound) for bound in self._upper_bounds)
        super().__init__(name, documentation, labelnames, registry)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self._upper_bounds)

    def collect(self) -> Iterator[Metric]:
        metric = self._metric()
        samples = metric.samples
        for labels, series in self._labelled():
            cumulative = 0
            for le, count in zip(self._bucket_labels, list(series.counts), strict=True):
                cumulative += count
                samples.append(Sample(f"{self._name}_bucket", {**labels, "le": le}, cumulative))
            samples.append(Sample(f"{self._name}_count", labels, cumulative))
            samples.append(Sample(f"{self._name}_sum", labels, series.sum))
            samples.append(Sample(f"{self._name}_created", labels, series.created))
        yield metric
