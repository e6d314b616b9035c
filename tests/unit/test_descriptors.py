"""Tests of the descriptor budget: the soft limit raised to the hard one, the reserve kept, the connection caps fitted."""

from __future__ import annotations

import resource

import pytest

from duro.descriptors import DescriptorBudgetError, budget_connections


class FakeLimits:
    """RLIMIT_NOFILE as `getrlimit`/`setrlimit` see it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, soft: int, hard: int) -> None:
        self.soft, self.hard = soft, hard
        monkeypatch.setattr(resource, "getrlimit", lambda which: (self.soft, self.hard))
        monkeypatch.setattr(resource, "setrlimit", self._set)

    def _set(self, which: int, limits: tuple[int, int]) -> None:
        assert limits[1] == self.hard, "the hard limit is left as it is"
        self.soft = limits[0]


def test_the_soft_limit_is_raised_to_the_hard_one_and_the_caps_fit_under_it(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = FakeLimits(monkeypatch, soft=1024, hard=4096)
    budget = budget_connections(10_000, 128, reserved=256)
    assert limits.soft == 4096
    assert budget.descriptor_limit == 4096
    assert budget.max_admin_connections == 128
    assert budget.max_ingress_connections == 4096 - 256 - 128


def test_a_1024_limit_keeps_the_reserve_and_lowers_both_caps(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    FakeLimits(monkeypatch, soft=1024, hard=1024)
    budget = budget_connections(10_000, 128, reserved=256)
    assert (budget.max_ingress_connections, budget.max_admin_connections) == (672, 96)
    assert budget.max_ingress_connections + budget.max_admin_connections + 256 <= 1024
    assert "lowered from max_ingress_connections=10000, max_admin_connections=128 to fit" in caplog.text


def test_caps_that_fit_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeLimits(monkeypatch, soft=65536, hard=65536)
    budget = budget_connections(1000, 50, reserved=256)
    assert (budget.max_ingress_connections, budget.max_admin_connections) == (1000, 50)


def test_too_few_descriptors_refuse_to_start_naming_what_to_change(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeLimits(monkeypatch, soft=256, hard=256)
    with pytest.raises(DescriptorBudgetError, match=r"may open 256 files .* reserved_file_descriptors=256 .* raise the limit"):
        budget_connections(10_000, 128, reserved=256)
