"""A node freezes its startup heap once it serves: later full collections do not walk it, later garbage is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from duro.node import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as usual


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_startup_objects_leave_the_collected_generations(unfrozen: None) -> None:
    startup = [{"n": i} for i in range(10_000)]
    assert gc.get_freeze_count() == 0
    freeze_startup_heap()
    assert gc.get_freeze_count() >= len(startup)
    tracked = {id(obj) for generation in range(3) for obj in gc.get_objects(generation)}
    assert id(startup) not in tracked
    assert not any(id(item) in tracked for item in startup)


def test_garbage_made_after_the_freeze_is_still_collected(unfrozen: None) -> None:
    freeze_startup_heap()
    node = _Node()
    gone = weakref.ref(node)
    del node
    assert gone() is not None  # the cycle keeps it until a collection
    gc.collect()
    assert gone() is None
