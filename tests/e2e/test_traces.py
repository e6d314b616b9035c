"""Traces in a real Jaeger: a call's ingress, invocation and attempt spans share the client's trace id, parent to child.

Jaeger (all-in-one v1.76.0, built from the Go module proxy by
`scripts/setup.d/61-jaeger.sh`) receives duro's spans over OTLP/HTTP and is
asked for the trace through its query API. The handler reports the
`traceparent` it was given, which must name the attempt span.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import DuroServer, ManagedProcess, ServiceEndpoint, free_port, http, wait_until

JAEGER = Path.home() / ".cache" / "duro-tools" / "jaeger-v1.76.0" / "all-in-one"


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[dict[str, int]]:
    if not JAEGER.exists():
        pytest.skip(f"Jaeger is not built at {JAEGER}; scripts/setup.d/61-jaeger.sh builds it")
    ports = {name: free_port() for name in ("otlp_http", "otlp_grpc", "query", "query_grpc", "admin", "collector_grpc", "collector_http")}
    args = [
        str(JAEGER),
        f"--collector.otlp.http.host-port=127.0.0.1:{ports['otlp_http']}",
        f"--collector.otlp.grpc.host-port=127.0.0.1:{ports['otlp_grpc']}",
        f"--collector.grpc-server.host-port=127.0.0.1:{ports['collector_grpc']}",
        f"--collector.http-server.host-port=127.0.0.1:{ports['collector_http']}",
        f"--query.http-server.host-port=127.0.0.1:{ports['query']}",
        f"--query.grpc-server.host-port=127.0.0.1:{ports['query_grpc']}",
        f"--admin.http.host-port=127.0.0.1:{ports['admin']}",
        "--memory.max-traces=1000",
    ]
    process = ManagedProcess("jaeger", args, tmp_path / "jaeger.log")
    process.start()
    try:
        wait_until(lambda: process.alive() and http("GET", f"http://127.0.0.1:{ports['admin']}/")[0] == 200, 60, "Jaeger to serve")
        yield ports
    finally:
        process.stop()


def trace_spans(query_port: int, trace_id: str) -> list[dict[str, Any]]:
    status, _, body = http("GET", f"http://127.0.0.1:{query_port}/api/traces/{trace_id}")
    if status != 200:
        return []
    (trace,) = json.loads(body)["data"]
    return list(trace["spans"])


def parent_of(span: dict[str, Any]) -> str | None:
    parents = [ref["spanID"] for ref in span.get("references", []) if ref["refType"] == "CHILD_OF"]
    return parents[0] if parents else None


def test_a_call_s_ingress_invocation_and_attempt_spans_are_one_trace(
    tmp_path: Path, jaeger: dict[str, int], official_python_service: ServiceEndpoint
) -> None:
    endpoint = f"http://127.0.0.1:{jaeger['otlp_http']}/v1/traces"
    node = DuroServer(
        tmp_path / "data", tmp_path / "duro.log", env={"DURO_TRACING__ENDPOINT": endpoint, "DURO_TRACING__EXPORT_DELAY_MS": "100"}
    )
    node.start()
    try:
        node.wait_ready()
        node.register(official_python_service.uri)
        trace_id, client_span_id = secrets.token_hex(16), secrets.token_hex(8)
        status, headers, body = node.call("/Greeter/trace_context", headers={"traceparent": f"00-{trace_id}-{client_span_id}-01"})
        assert status == 200, body
        invocation_id = headers["x-restate-id"]
        seen_by_handler = json.loads(body)

        def complete() -> list[dict[str, Any]] | None:
            spans = trace_spans(jaeger["query"], trace_id)
            names = {s["operationName"] for s in spans}
            return spans if {"ingress call", "invocation Greeter/trace_context", "attempt Greeter/trace_context"} <= names else None

        spans = wait_until(complete, 30, f"the spans of trace {trace_id} in Jaeger")
    finally:
        node.stop()
    by_name = {span["operationName"]: span for span in spans}
    ingress, invocation, attempt = (
        by_name["ingress call"],
        by_name["invocation Greeter/trace_context"],
        by_name["attempt Greeter/trace_context"],
    )
    assert {span["traceID"] for span in (ingress, invocation, attempt)} == {trace_id}
    assert parent_of(ingress) == client_span_id, "the ingress continues the client's trace context"
    assert parent_of(invocation) == ingress["spanID"]
    assert parent_of(attempt) == invocation["spanID"]
    tags = {tag["key"]: tag["value"] for tag in attempt["tags"]}
    assert tags["restate.invocation.id"] == invocation_id and tags["duro.attempt.outcome"] == "completed"
    assert seen_by_handler["attempt"] == f"00-{trace_id}-{attempt['spanID']}-01", "the deployment gets the attempt span as parent"
    assert seen_by_handler["invocation"] == f"00-{trace_id}-{ingress['spanID']}-01", "the invocation's headers name the ingress span"
    # The invocation span starts at the invocation's creation time, stored in milliseconds (Jaeger counts microseconds).
    assert ingress["startTime"] - 1_000 <= invocation["startTime"] <= attempt["startTime"]
