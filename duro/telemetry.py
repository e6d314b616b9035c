"""OpenTelemetry for one node: a tracer provider exporting spans over OTLP/HTTP when `tracing.endpoint` is set.

Spans are batched and exported in the background (bounded queue, dropped
beyond `max_queue_spans`); closing flushes what is queued, for at most
`export_timeout_ms`. Without an endpoint there is no provider and no span.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer

from duro import __version__
from duro.settings import TracingSettings
from partition_worker.tracing import ChosenSpanIds


class Telemetry:
    def __init__(self, settings: TracingSettings, node_id: int) -> None:
        self._provider: TracerProvider | None = None
        if settings.endpoint is None:
            return
        resource = Resource.create({"service.name": settings.service_name, "service.version": __version__, "duro.node.id": node_id})
        self._provider = TracerProvider(resource=resource, id_generator=ChosenSpanIds())
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, timeout=settings.export_timeout_ms / 1000)
        self._provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=settings.max_queue_spans,
                schedule_delay_millis=settings.export_delay_ms,
                max_export_batch_size=settings.max_export_batch_spans,
                export_timeout_millis=settings.export_timeout_ms,
            )
        )

    def tracer(self, name: str) -> Tracer | None:
        """A tracer for one edge of the node (ingress, invoker); None when tracing is off."""
        return self._provider.get_tracer(name, __version__) if self._provider is not None else None

    def close(self) -> None:
        """Export what is queued, then stop (blocking, bounded by the exporter's timeout)."""
        if self._provider is not None:
            self._provider.shutdown()
