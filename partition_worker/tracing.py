"""Spans of invocations and attempts, and the W3C trace context an attempt hands to its deployment.

Tracing lives at the invoker (an edge), never in the state machine. An
invocation's trace context is the `traceparent` header of its input (the
ingress puts its own span there); without one, the trace id is derived from
the invocation id, so all attempts of an invocation still share one trace.

- The **invocation span** has a span id derived from the invocation id, so every
  attempt, on whichever node and after any restart, names the same parent. It
  is emitted once, by the leader that sees the invocation end, with the
  invocation's creation time as its start.
- Each **attempt span** is a child of the invocation span, from opening the
  request to the attempt's end, with the outcome as an attribute; the request
  carries it as `traceparent`, so the SDK's spans join the trace.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from protocol import service_protocol_pb2 as pb

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
INVOCATION_ID_ATTRIBUTE = "restate.invocation.id"
TARGET_ATTRIBUTE = "restate.invocation.target"
ATTEMPT_ATTRIBUTE = "restate.invocation.attempt"
OUTCOME_ATTRIBUTE = "duro.attempt.outcome"

_propagator = TraceContextTextMapPropagator()
_chosen_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("duro_chosen_ids", default=None)


class ChosenSpanIds(RandomIdGenerator):
    """Random ids, except the (trace id, span id) `emit_invocation_span` chooses; the tracer provider must use this generator."""

    def generate_span_id(self) -> int:
        chosen = _chosen_ids.get()
        return chosen[1] if chosen is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        chosen = _chosen_ids.get()
        return chosen[0] if chosen is not None else super().generate_trace_id()


def invocation_span_id(invocation_id: str) -> int:
    """The invocation span's id: the first 8 bytes of a hash of the invocation id (never 0, which is invalid)."""
    return int.from_bytes(hashlib.sha256(b"span:" + invocation_id.encode()).digest()[:8], "big") or 1


def derived_trace_id(invocation_id: str) -> int:
    return int.from_bytes(hashlib.sha256(b"trace:" + invocation_id.encode()).digest()[:16], "big") or 1


def parent_of(invocation_id: str, input_entry: bytes | None) -> SpanContext:
    """The invocation's parent: the `traceparent` among its input headers, else a remote context with a derived trace id."""
    if input_entry is not None:
        headers = {h.key.lower(): h.value for h in pb.InputCommandMessage.FromString(input_entry).headers}
        if TRACEPARENT in headers:
            context = trace.get_current_span(_propagator.extract(headers)).get_span_context()
            if context.is_valid:
                return context
    return SpanContext(derived_trace_id(invocation_id), invocation_span_id(invocation_id), is_remote=True, trace_flags=TraceFlags(1))


def invocation_context(invocation_id: str, parent: SpanContext) -> SpanContext:
    """The invocation span's context (known before the span itself is emitted)."""
    if parent.span_id == invocation_span_id(invocation_id):  # no traceparent: the derived context is the invocation's own
        return parent
    return SpanContext(parent.trace_id, invocation_span_id(invocation_id), is_remote=True, trace_flags=parent.trace_flags)


def start_attempt_span(tracer: Tracer, invocation_id: str, parent: SpanContext, target: str, attempt: int) -> Span:
    context = trace.set_span_in_context(NonRecordingSpan(invocation_context(invocation_id, parent)))
    attributes: dict[str, str | int] = {INVOCATION_ID_ATTRIBUTE: invocation_id, TARGET_ATTRIBUTE: target, ATTEMPT_ATTRIBUTE: attempt}
    return tracer.start_span(f"attempt {target}", context=context, kind=SpanKind.CLIENT, attributes=attributes)


def emit_invocation_span(tracer: Tracer, invocation_id: str, parent: SpanContext, target: str, created_at_ms: int, status: str) -> None:
    """Emit the invocation's span, from its creation to now, under the id every attempt already names as its parent."""
    if parent.span_id == invocation_span_id(invocation_id):
        context = Context()  # a root: the chosen ids give it the derived trace id its attempts already use
    else:
        context = trace.set_span_in_context(NonRecordingSpan(parent))
    token = _chosen_ids.set((parent.trace_id, invocation_span_id(invocation_id)))
    try:
        span = tracer.start_span(
            f"invocation {target}",
            context=context,
            kind=SpanKind.SERVER,
            attributes={INVOCATION_ID_ATTRIBUTE: invocation_id, TARGET_ATTRIBUTE: target, "duro.invocation.status": status},
            start_time=created_at_ms * 1_000_000,
        )
    finally:
        _chosen_ids.reset(token)
    span.end()


def trace_headers(span: Span) -> Iterable[tuple[str, str]]:
    """`traceparent` (and `tracestate`) naming `span`, for the attempt's request to the deployment."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, trace.set_span_in_context(span))
    return carrier.items()
