"""The admin API's subscription and Kafka cluster routes, with Restate 1.7's paths, status codes and JSON shapes.

`POST/GET /subscriptions`, `GET/DELETE /subscriptions/{id}`, and
`POST/GET /kafka-clusters`, `GET/PATCH/DELETE /kafka-clusters/{name}`, as
the `restate subscriptions` and `restate kafka-clusters` commands use them.
duro adds `GET /subscriptions/{id}/lag`: the subscription's consumer group
position per topic partition, read from the Kafka cluster (so it covers every
node's share). Secrets in properties are shown as `***`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ingress import kafka_options
from ingress.admin import _describe_validation, _json_body, _query_bool, json_response
from ingress.durations import format_rfc3339_ms
from ingress.errors import BadRequest, NotFound
from ingress.kafka_inspect import KafkaInspector
from ingress.registry import RegistryError
from ingress.subscriptions import KafkaCluster, Subscription, SubscriptionRegistry, check_subscription_id

RouteHandler = Callable[[Request, int], Awaitable[Response]]
_Model = TypeVar("_Model", bound=BaseModel)
_T = TypeVar("_T")


class CreateSubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    source: str
    sink: str
    options: dict[str, str] | None = None


class CreateKafkaClusterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    properties: dict[str, str]


class UpdateKafkaClusterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    properties: dict[str, str]


class SubscriptionAdmin:
    """Route handlers over a `SubscriptionRegistry`; `routes()` lists them for the admin app's table."""

    def __init__(self, registry: SubscriptionRegistry, inspector: KafkaInspector) -> None:
        self.registry = registry
        self.inspector = inspector

    def routes(self) -> list[tuple[str, str, str, RouteHandler]]:
        return [
            ("/subscriptions", "POST", "create_subscription", self.create_subscription),
            ("/subscriptions", "GET", "list_subscriptions", self.list_subscriptions),
            ("/subscriptions/{subscription}", "GET", "get_subscription", self.get_subscription),
            ("/subscriptions/{subscription}", "DELETE", "delete_subscription", self.delete_subscription),
            ("/subscriptions/{subscription}/lag", "GET", "subscription_lag", self.subscription_lag),
            ("/kafka-clusters", "POST", "create_kafka_cluster", self.create_cluster),
            ("/kafka-clusters", "GET", "list_kafka_clusters", self.list_clusters),
            ("/kafka-clusters/{cluster}", "GET", "get_kafka_cluster", self.get_cluster),
            ("/kafka-clusters/{cluster}", "PATCH", "update_kafka_cluster", self.update_cluster),
            ("/kafka-clusters/{cluster}", "DELETE", "delete_kafka_cluster", self.delete_cluster),
        ]

    # ------------------------------------------------------------ subscriptions

    async def create_subscription(self, request: Request, api_version: int) -> Response:
        body = await _parse(request, CreateSubscriptionRequest)
        subscription = await _registry_call(self.registry.create_subscription(body.source, body.sink, body.options))
        return json_response(201, subscription_json(subscription), {"location": f"subscriptions/{subscription.id}"})

    async def list_subscriptions(self, request: Request, api_version: int) -> Response:
        sink, source = request.query_params.get("sink"), request.query_params.get("source")
        listed = self.registry.subscriptions(sink=sink, source=source)
        return json_response(200, {"subscriptions": [subscription_json(s) for s in listed]})

    async def get_subscription(self, request: Request, api_version: int) -> Response:
        return json_response(200, subscription_json(self._subscription(request)))

    async def delete_subscription(self, request: Request, api_version: int) -> Response:
        await _registry_call(self.registry.delete_subscription(_subscription_id(request)))
        return Response(status_code=202)

    async def subscription_lag(self, request: Request, api_version: int) -> Response:
        subscription = self._subscription(request)
        cluster = self.registry.cluster(subscription.cluster)
        if cluster is None:
            raise NotFound(f"The requested Kafka cluster '{subscription.cluster}' does not exist")
        properties = {**cluster.properties, **subscription.options}
        rows = await _registry_call(self.inspector.lag(properties, subscription.group_id, subscription.topic))
        partitions = [
            {"partition": r.partition, "committed_offset": r.committed_offset, "end_offset": r.end_offset, "lag": r.lag} for r in rows
        ]
        payload = {"id": subscription.id, "group_id": subscription.group_id, "topic": subscription.topic}
        return json_response(200, {**payload, "lag": sum(r.lag for r in rows), "partitions": partitions})

    def _subscription(self, request: Request) -> Subscription:
        subscription_id = _subscription_id(request)
        subscription = self.registry.subscription(subscription_id)
        if subscription is None:
            raise NotFound(f"The requested subscription '{subscription_id}' does not exist")
        return subscription

    # ------------------------------------------------------------ Kafka clusters

    async def create_cluster(self, request: Request, api_version: int) -> Response:
        body = await _parse(request, CreateKafkaClusterRequest)
        cluster = await _registry_call(self.registry.create_cluster(body.name, body.properties))
        return json_response(201, cluster_json(cluster), {"location": f"kafka-clusters/{cluster.name}"})

    async def list_clusters(self, request: Request, api_version: int) -> Response:
        return json_response(200, {"clusters": [cluster_json(c) for c in self.registry.clusters()]})

    async def get_cluster(self, request: Request, api_version: int) -> Response:
        cluster = self._cluster(request)
        include = _query_bool(request, "include_subscriptions")
        users = [subscription_json(s) for s in self.registry.subscriptions() if s.cluster == cluster.name] if include else []
        return json_response(200, {**cluster_json(cluster), "subscriptions": users})

    async def update_cluster(self, request: Request, api_version: int) -> Response:
        body = await _parse(request, UpdateKafkaClusterRequest)
        cluster = await _registry_call(self.registry.update_cluster(request.path_params["cluster"], body.properties))
        return json_response(200, cluster_json(cluster))

    async def delete_cluster(self, request: Request, api_version: int) -> Response:
        force = _query_bool(request, "force")
        await _registry_call(self.registry.delete_cluster(request.path_params["cluster"], force))
        return Response(status_code=202)

    def _cluster(self, request: Request) -> KafkaCluster:
        name = request.path_params["cluster"]
        cluster = self.registry.cluster(name)
        if cluster is None:
            raise NotFound(f"The requested Kafka cluster '{name}' does not exist")
        return cluster


def subscription_json(subscription: Subscription) -> dict[str, Any]:
    """Restate's `SubscriptionResponse`."""
    options = kafka_options.redacted(subscription.options)
    return {"id": subscription.id, "source": subscription.source, "sink": subscription.sink, "options": options}


def cluster_json(cluster: KafkaCluster) -> dict[str, Any]:
    """Restate's `SimpleKafkaClusterResponse`."""
    created_at = format_rfc3339_ms(cluster.created_at_ms)
    return {"name": cluster.name, "properties": kafka_options.redacted(cluster.properties), "created_at": created_at}


def _subscription_id(request: Request) -> str:
    text = request.path_params["subscription"]
    try:
        return check_subscription_id(text)
    except ValueError as error:
        raise BadRequest(f"Invalid URL: Cannot parse `subscription` with value `{text}`: {error}") from None


async def _parse(request: Request, model: type[_Model]) -> _Model:
    try:
        return model.model_validate(await _json_body(request))
    except ValidationError as error:
        raise BadRequest(_describe_validation(error)) from None


async def _registry_call(work: Awaitable[_T]) -> _T:
    try:
        return await work
    except RegistryError as error:
        raise error.kind(error.message, restate_code=error.restate_code) from None
