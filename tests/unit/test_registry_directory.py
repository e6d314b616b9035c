"""duro/directory.py and ingress.registry.DerivedCache: answers made once per registry object, and made again once the registry changes."""

from __future__ import annotations

import pytest
from ingress_fakes import TEST_MANIFEST, endpoint_from_manifest

from duro.directory import RegistryDirectory
from ingress import registry as registry_module
from ingress.registry import DerivedCache, Registry, ServiceChange
from ingress.settings import IngressSettings
from wal.records import DEFAULT_RETRY_POLICY


def test_a_derived_value_is_made_once_per_source_object_and_again_for_a_new_one() -> None:
    made: list[str] = []

    def derive(source: list[str]) -> str:
        made.append(source[0])
        return source[0].upper()

    cache: DerivedCache[list[str], str] = DerivedCache(derive)
    first, second = ["a"], ["b"]
    assert cache.get("k", first) == "A"
    assert cache.get("k", first) == "A"
    assert made == ["a"], "the same object under the same key: derived once"
    assert cache.get("k", second) == "B", "another object under the key (the registry replaced it): derived again"
    assert cache.get("k", ["a"]) == "A" and made == ["a", "b", "a"], "an equal but different object is not the one cached"


def test_the_cache_starts_afresh_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "MAX_DERIVED_CACHED", 2)
    made: list[int] = []
    cache: DerivedCache[tuple[int], int] = DerivedCache(lambda source: made.append(source[0]) or source[0])
    sources = [(i,) for i in range(3)]
    for source in sources:
        cache.get(source[0], source)
    assert len(cache._entries) == 1, "the third entry found the cache full and cleared it"
    cache.get(0, sources[0])
    assert made == [0, 1, 2, 0]


async def test_the_directory_answers_follow_registry_changes() -> None:
    registry = Registry()
    deployment = (await registry.register(endpoint_from_manifest(TEST_MANIFEST))).deployment
    directory = RegistryDirectory(registry, IngressSettings(), DEFAULT_RETRY_POLICY)
    info = directory.handler_info("Greeter", "greet")
    assert info is not None and info.inactivity_timeout_ms is None
    assert directory.handler_info("Greeter", "greet") is info, "unchanged registry: the same answer, not a new one"
    endpoint = directory.latest_deployment_for("Greeter")
    assert endpoint is not None and endpoint.additional_headers == {}
    assert directory.deployment(deployment.id) is endpoint

    await registry.modify_service("Greeter", ServiceChange(inactivity_timeout_ms=1_234))
    changed = directory.handler_info("Greeter", "greet")
    assert changed is not None and changed.inactivity_timeout_ms == 1_234, "a PATCH of the service reaches the next attempt"

    await registry.update_deployment(deployment.id, endpoint=None, additional_headers={"x-token": "t"}, overwrite=False, dry_run=False)
    updated = directory.latest_deployment_for("Greeter")
    assert updated is not None and updated.additional_headers == {"x-token": "t"}, "new deployment headers reach the next attempt"
    assert directory.handler_info("Nope", "greet") is None
