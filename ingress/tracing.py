"""The ingress request's span: it continues the client's W3C trace context and hands its own context to the invocation.

The span's context replaces the request's `traceparent`/`tracestate` among the
headers stored with the invocation, so the invocation's span (emitted by the
invoker) is the ingress span's child, and the handler sees which request
started it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.requests import Request
from starlette.responses import Response

TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_SCOPE_KEY = "duro.trace_headers"  # the ingress span's traceparent (and tracestate), in the ASGI scope
_propagator = TraceContextTextMapPropagator()


class IngressTracing:
    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    async def traced(self, request: Request, handle: Callable[[Request], Awaitable[Response]], kind_of: Callable[[], str]) -> Response:
        """Run `handle` inside a server span that continues the request's trace context."""
        incoming = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.scope["headers"] if name in TRACE_HEADERS}
        with self._tracer.start_as_current_span("ingress", context=_propagator.extract(incoming), kind=SpanKind.SERVER) as span:
            carrier: dict[str, str] = {}
            _propagator.inject(carrier)
            request.scope[_SCOPE_KEY] = tuple(carrier.items())
            response = await handle(request)
            span.update_name(f"ingress {kind_of()}")
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("url.path", request.url.path)
            span.set_attribute("http.response.status_code", response.status_code)
            invocation_id = response.headers.get("x-restate-id")
            if invocation_id is not None:
                span.set_attribute("restate.invocation.id", invocation_id)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
        return response


def trace_headers_of(request: Request) -> tuple[tuple[str, str], ...] | None:
    """The ingress span's trace headers, to store with the invocation instead of the client's; None without tracing."""
    return request.scope.get(_SCOPE_KEY)
