"""`GET /services/{service}/openapi`: an OpenAPI 3.1 document of how to call a service through the ingress.

One path per public handler (`/{service}/{handler}`, or `/{service}/{key}/{handler}`
for objects and workflows) for a call, and its `/send` variant for a one-way
send (202 with the invocation id). Request and response bodies carry the
handler's content types and JSON schemas as the manifest declared them.
"""

from __future__ import annotations

from typing import Any

from ingress.schema import HandlerInfo, ServiceInfo
from wal.records import ServiceType

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["message"],
}


def service_openapi(service: ServiceInfo) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    keyed = service.service_type is not ServiceType.SERVICE
    for handler in service.handlers.values():
        if not service.handler_public(handler):
            continue
        base = f"/{service.name}/{{key}}/{handler.name}" if keyed else f"/{service.name}/{handler.name}"
        paths[base] = {"post": _operation(service, handler, keyed, send=False)}
        paths[f"{base}/send"] = {"post": _operation(service, handler, keyed, send=True)}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": service.name, "version": "1.0.0"},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }
    if service.documentation:
        document["info"]["description"] = service.documentation
    return document


def _operation(service: ServiceInfo, handler: HandlerInfo, keyed: bool, send: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{handler.name}{'_send' if send else ''}",
        "summary": f"{'Send' if send else 'Call'} {service.name}/{handler.name}",
        "responses": _send_responses() if send else _call_responses(handler),
    }
    if handler.documentation:
        operation["description"] = handler.documentation
    parameters = [{"name": "idempotency-key", "in": "header", "required": False, "schema": {"type": "string"}}]
    if keyed:
        parameters.insert(0, {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}})
    if send:
        parameters.append({"name": "delay", "in": "query", "required": False, "schema": {"type": "string"}})
    operation["parameters"] = parameters
    body = _request_body(handler)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _request_body(handler: HandlerInfo) -> dict[str, Any] | None:
    rules = handler.input
    if rules.content_type is None:
        return None
    media: dict[str, Any] = {}
    if rules.json_schema is not None:
        media["schema"] = rules.json_schema
    return {"required": not rules.accepts_empty, "content": {rules.content_type: media}}


def _call_responses(handler: HandlerInfo) -> dict[str, Any]:
    rules = handler.output
    success: dict[str, Any] = {"description": "The handler's output"}
    if rules.content_type is not None:
        media: dict[str, Any] = {}
        if rules.json_schema is not None:
            media["schema"] = rules.json_schema
        success["content"] = {rules.content_type: media}
    return {"200": success, "default": _error_response()}


def _send_responses() -> dict[str, Any]:
    accepted = {
        "type": "object",
        "properties": {"invocationId": {"type": "string"}, "status": {"type": "string", "enum": ["Accepted", "PreviouslyAccepted"]}},
        "required": ["invocationId", "status"],
    }
    return {"202": {"description": "Accepted", "content": {"application/json": {"schema": accepted}}}, "default": _error_response()}


def _error_response() -> dict[str, Any]:
    return {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
