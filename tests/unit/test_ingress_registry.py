"""Tests of the deployment registry (versioning, re-registration rules, persistence) and of manifest conversion."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from ingress_fakes import TEST_MANIFEST, endpoint_from_manifest

from ingress.errors import Conflict, NotFound
from ingress.registry import (
    DEPLOYMENT_ID_PREFIX,
    FileRegistryStore,
    RegisterOutcome,
    Registry,
    RegistryConflict,
    RegistryError,
    decode_registry,
    new_deployment_id,
)
from ingress.schema import InputError, InputRules, SchemaError, validate_input
from wal.records import HandlerKind, ServiceType


def manifest_with(change: Any = None) -> dict[str, Any]:
    manifest = copy.deepcopy(TEST_MANIFEST)
    if change is not None:
        change(manifest)
    return manifest


def service(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in manifest["services"] if s["name"] == name)


def add_handler(manifest: dict[str, Any]) -> None:
    service(manifest, "Greeter")["handlers"].append({"name": "wave", "input": {}})


def remove_handler(manifest: dict[str, Any]) -> None:
    greeter = service(manifest, "Greeter")
    greeter["handlers"] = [h for h in greeter["handlers"] if h["name"] != "echo"]


def counter_becomes_service(manifest: dict[str, Any]) -> None:
    counter = service(manifest, "Counter")
    counter["ty"] = "SERVICE"
    for handler in counter["handlers"]:
        handler.pop("ty", None)


class FailingStore:
    def __init__(self) -> None:
        self.saved: list[bytes] = []
        self.fail = False

    async def load(self) -> bytes | None:
        return self.saved[-1] if self.saved else None

    async def save(self, document: bytes) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saved.append(document)


async def test_first_registration_creates_revision_one() -> None:
    registry = Registry()
    result = await registry.register(endpoint_from_manifest(TEST_MANIFEST))
    assert result.outcome is RegisterOutcome.CREATED
    deployment = result.deployment
    assert deployment.id.startswith(DEPLOYMENT_ID_PREFIX) and len(deployment.id) == 26
    assert registry.deployment(deployment.id) == deployment
    counter = registry.service("Counter")
    assert counter is not None and counter.revision == 1 and counter.deployment_id == deployment.id
    assert counter.service_type is ServiceType.VIRTUAL_OBJECT
    assert registry.handler_target("Counter", "get") == (ServiceType.VIRTUAL_OBJECT, HandlerKind.SHARED)
    assert registry.handler_target("Counter", "add") == (ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
    assert registry.handler_target("Signup", "run") == (ServiceType.WORKFLOW, HandlerKind.WORKFLOW)
    assert registry.handler_target("Signup", "status") == (ServiceType.WORKFLOW, HandlerKind.SHARED)
    assert registry.handler_target("Greeter", "greet") == (ServiceType.SERVICE, None)
    assert registry.handler_target("Greeter", "nope") is None
    assert registry.handler_target("Nope", "greet") is None
    assert registry.latest_deployment_for("Greeter") == deployment


async def test_identical_reregistration_is_unchanged() -> None:
    registry = Registry()
    first = await registry.register(endpoint_from_manifest(TEST_MANIFEST))
    version = registry.version
    again = await registry.register(endpoint_from_manifest(TEST_MANIFEST, uri="http://svc:9080/"))
    assert again.outcome is RegisterOutcome.UNCHANGED
    assert again.deployment == first.deployment
    assert registry.version == version


async def test_compatible_change_on_same_uri_updates_in_place() -> None:
    registry = Registry()
    first = await registry.register(endpoint_from_manifest(TEST_MANIFEST))
    updated = await registry.register(endpoint_from_manifest(manifest_with(add_handler)))
    assert updated.outcome is RegisterOutcome.UPDATED
    assert updated.deployment.id == first.deployment.id
    assert len(registry.deployments()) == 1
    assert registry.service("Greeter").revision == 2  # type: ignore[union-attr]
    assert registry.service("Counter").revision == 1  # type: ignore[union-attr]
    assert registry.handler_target("Greeter", "wave") == (ServiceType.SERVICE, None)


@pytest.mark.parametrize("change", [remove_handler, counter_becomes_service])
async def test_incompatible_change_on_same_uri_needs_force(change: Any) -> None:
    registry = Registry()
    first = await registry.register(endpoint_from_manifest(TEST_MANIFEST))
    with pytest.raises(RegistryConflict) as raised:
        await registry.register(endpoint_from_manifest(manifest_with(change)))
    assert raised.value.kind is Conflict
    assert "force" in raised.value.message
    assert registry.deployment(first.deployment.id) == first.deployment
    forced = await registry.register(endpoint_from_manifest(manifest_with(change)), force=True)
    assert forced.outcome is RegisterOutcome.OVERWRITTEN
    assert forced.deployment.id == first.deployment.id
    assert len(registry.deployments()) == 1


async def test_new_deployment_becomes_latest_and_the_old_one_stays_for_pinned_invocations() -> None:
    registry = Registry(clock_ms=iter(range(1000, 2000)).__next__)
    old = await registry.register(endpoint_from_manifest(TEST_MANIFEST, uri="http://v1:9080"))
    new = await registry.register(endpoint_from_manifest(manifest_with(remove_handler), uri="http://v2:9080"))
    assert new.outcome is RegisterOutcome.CREATED and new.deployment.id != old.deployment.id
    greeter = registry.service("Greeter")
    assert greeter is not None and greeter.revision == 2 and greeter.deployment_id == new.deployment.id
    assert registry.handler_target("Greeter", "echo") is None  # removed in the latest revision
    assert "echo" in registry.deployment(old.deployment.id).services["Greeter"].handlers  # type: ignore[union-attr]
    assert [d.id for d in registry.deployments()] == [old.deployment.id, new.deployment.id]


async def test_type_change_on_a_new_uri_needs_breaking() -> None:
    registry = Registry()
    await registry.register(endpoint_from_manifest(TEST_MANIFEST, uri="http://v1:9080"))
    changed = endpoint_from_manifest(manifest_with(counter_becomes_service), uri="http://v2:9080")
    with pytest.raises(RegistryConflict) as raised:
        await registry.register(changed)
    assert raised.value.restate_code == "META0006" and "Counter" in raised.value.message
    result = await registry.register(changed, breaking=True)
    assert result.outcome is RegisterOutcome.CREATED
    assert registry.handler_target("Counter", "add") == (ServiceType.SERVICE, None)


async def test_dry_run_changes_nothing() -> None:
    registry = Registry()
    result = await registry.register(endpoint_from_manifest(TEST_MANIFEST), dry_run=True)
    assert result.outcome is RegisterOutcome.CREATED
    assert registry.deployments() == [] and registry.service("Greeter") is None


async def test_remove_deployment_falls_back_to_the_previous_revision() -> None:
    registry = Registry(clock_ms=iter(range(1000, 2000)).__next__)
    old = await registry.register(endpoint_from_manifest(TEST_MANIFEST, uri="http://v1:9080"))
    new = await registry.register(endpoint_from_manifest(TEST_MANIFEST, uri="http://v2:9080"))
    with pytest.raises(RegistryConflict):
        await registry.remove_deployment(new.deployment.id)
    await registry.remove_deployment(old.deployment.id)  # superseded everywhere: allowed without force
    await registry.register(endpoint_from_manifest(TEST_MANIFEST, uri="http://v1:9080"))
    latest = registry.service("Greeter")
    assert latest is not None and latest.revision == 3
    removed = await registry.remove_deployment(latest.deployment_id, force=True)
    fallback = registry.service("Greeter")
    assert fallback is not None and fallback.deployment_id == new.deployment.id and fallback.revision == 2
    assert registry.deployment(removed.id) is None
    with pytest.raises(RegistryError) as raised:
        await registry.remove_deployment(removed.id, force=True)
    assert raised.value.kind is NotFound


async def test_file_store_round_trip(tmp_path: Path) -> None:
    store = FileRegistryStore(tmp_path)
    registry = await Registry.open(store)
    created = await registry.register(endpoint_from_manifest(TEST_MANIFEST), additional_headers={"x-key": "k"}, metadata={"team": "a"})
    assert (tmp_path / "registry.json").exists() and not (tmp_path / "registry.json.tmp").exists()
    reloaded = Registry(FileRegistryStore(tmp_path))
    await reloaded.load()
    assert reloaded.deployments() == [created.deployment]
    assert reloaded.handler_target("Signup", "run") == (ServiceType.WORKFLOW, HandlerKind.WORKFLOW)
    assert reloaded.deployment(created.deployment.id).additional_headers == {"x-key": "k"}  # type: ignore[union-attr]
    document = json.loads((tmp_path / "registry.json").read_text())
    assert document["format_version"] == 1


async def test_a_failed_save_leaves_the_registry_unchanged() -> None:
    store = FailingStore()
    registry = Registry(store)
    store.fail = True
    with pytest.raises(OSError):
        await registry.register(endpoint_from_manifest(TEST_MANIFEST))
    assert registry.deployments() == [] and registry.service("Greeter") is None
    store.fail = False
    await registry.register(endpoint_from_manifest(TEST_MANIFEST))
    assert len(store.saved) == 1


async def test_corrupt_document_is_reported(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text("{nope")
    with pytest.raises(RegistryError, match="not JSON"):
        await Registry(FileRegistryStore(tmp_path)).load()
    with pytest.raises(RegistryError, match="format_version"):
        decode_registry(b'{"format_version": 99, "deployments": []}')


def test_deployment_ids_are_unique_and_base62() -> None:
    ids = {new_deployment_id() for _ in range(100)}
    assert len(ids) == 100
    for deployment_id in ids:
        assert deployment_id.startswith("dp_1") and deployment_id[4:].isalnum() and len(deployment_id) == 26


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: service(m, "Greeter")["handlers"][0].update(ty="EXCLUSIVE"), "not allowed in a service"),
        (lambda m: service(m, "Counter")["handlers"][0].update(ty="WORKFLOW"), "not allowed in a virtual_object"),
        (lambda m: service(m, "Greeter").update(name="restateThing"), "reserved"),
        (lambda m: service(m, "Counter")["handlers"][0].update(workflowCompletionRetention=1), "workflowCompletionRetention"),
        (lambda m: service(m, "Greeter")["handlers"].append({"name": "greet"}), "twice"),
    ],
)
def test_invalid_manifests_are_rejected(change: Any, fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment):
        endpoint_from_manifest(manifest_with(change))


def test_default_input_rules_accept_empty_or_any_content_type() -> None:
    rules = InputRules()
    validate_input(rules, None, b"")
    validate_input(rules, "application/octet-stream", b"\x00")
    with pytest.raises(InputError, match="missing content-type"):
        validate_input(rules, None, b"x")
    validate_input(InputRules(content_type="text/*"), "text/csv; charset=utf-8", b"a,b")
    with pytest.raises(InputError, match="does not match"):
        validate_input(InputRules(content_type="text/*"), "application/json", b"1")


def test_retry_policy_merges_handler_then_service_then_node_default() -> None:
    from ingress.registry import ResolvedHandler
    from ingress.schema import HandlerInfo, InvocationOptions, ServiceInfo
    from ingress.schema import RetryPolicy as Declared
    from wal.records import OnMaxAttempts, RetryPolicy, ServiceType

    service = ServiceInfo(
        "S", ServiceType.SERVICE, {}, options=InvocationOptions(retry_policy=Declared(initial_interval_ms=100, max_attempts=9))
    )
    handler = HandlerInfo("h", None, options=InvocationOptions(retry_policy=Declared(max_attempts=3, on_max_attempts="KILL")))
    node_default = RetryPolicy()
    merged = ResolvedHandler(service, handler, "dp_1", True).retry_policy(node_default)
    assert merged == RetryPolicy(
        initial_interval_ms=100,
        factor=2.0,
        max_interval_ms=node_default.max_interval_ms,
        max_attempts=3,
        on_max_attempts=OnMaxAttempts.KILL,
    )
    bare = ResolvedHandler(ServiceInfo("S", ServiceType.SERVICE, {}), HandlerInfo("h", None), "dp_1", True)
    assert bare.retry_policy(node_default) == node_default
