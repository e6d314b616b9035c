"""The service implementations the compatibility matrix runs: how to start each endpoint and how it names things.

Every implementation serves the same test services (see `tests/services/official_python.py`,
the reference): `Greeter`, `Counter`, `Steps`, `Recorder`, `Durable`, `Signup`,
with the same handler names, JSON shapes and side-effect lines written to the
file named by `DURO_TEST_SIDE_EFFECTS`; and the three seed examples, whose
service names and input shapes follow each language's seed code (`SeedNames`).
An implementation whose toolchain build is missing is skipped with the reason
(`scripts/setup` builds them all).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def _snake_subscription(user_id: str, card: str, subscriptions: list[str]) -> dict[str, Any]:
    return {"user_id": user_id, "credit_card": card, "subscriptions": subscriptions}


def _camel_subscription(user_id: str, card: str, subscriptions: list[str]) -> dict[str, Any]:
    return {"userId": user_id, "creditCard": card, "subscriptions": subscriptions}


@dataclass(frozen=True)
class SeedNames:
    """How one language's seed examples name their services, handlers and inputs."""

    subscription_service: str = "SubscriptionService"
    subscription_add: str = "add"
    cart: str = "ShoppingCart"
    cart_add_item: str = "add_item"
    cart_get_total: str = "get_total"
    signup: str = "UserSignup"
    signup_run: str = "run"
    signup_click: str = "click"
    subscription_body: Callable[[str, str, list[str]], Any] = _snake_subscription
    item_body: Callable[[str, float, int], Any] = lambda product, price, quantity: {
        "product_id": product,
        "price": price,
        "quantity": quantity,
    }
    user_body: Callable[[str, str], Any] = lambda name, email: {"name": name, "email": email}
    click_body: Callable[[str], Any] = lambda secret: secret


@dataclass(frozen=True)
class Implementation:
    name: str  # column header in the matrix, e.g. "python-sdk (h2 bidi)"
    language: str
    command: list[str]  # "{port}" is replaced by the endpoint's port
    cwd: Path = REPO_ROOT
    use_http_11: bool = False
    env: dict[str, str] = field(default_factory=dict)
    build_marker: Path | None = None  # must exist, else the implementation is skipped (not built)
    seeds: SeedNames = SeedNames()
    version: str = ""
    on_restate: bool = False  # also run this implementation against the real Restate server
    v7_column: bool = False  # also run it against duro with service protocol V7 enabled

    def skip_reason(self) -> str | None:
        if self.build_marker is not None and not self.build_marker.exists():
            return f"{self.name} is not built ({self.build_marker} missing): run scripts/setup"
        return None

    def argv(self, port: int) -> list[str]:
        return [part.replace("{port}", str(port)) for part in self.command]


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _serve(app: str) -> list[str]:
    return [sys.executable, "-m", "tests.services.serve", app, "--port", "{port}"]


PYTHON_SDK: list[Implementation] = [
    Implementation(
        "python-sdk h2",
        "python",
        _serve("tests.services.official_python:app"),
        version=f"restate-sdk {_package_version('restate-sdk')}",
        v7_column=True,
    ),
    Implementation(
        "python-sdk http1.1",
        "python",
        _serve("tests.services.official_python:app"),
        use_http_11=True,
        version=f"restate-sdk {_package_version('restate-sdk')}",
    ),
]


def _discover() -> list[Implementation]:
    """This module's implementations plus `IMPLEMENTATIONS` of every `tests/compat/impl_*.py` (one per language)."""
    import importlib

    found = list(PYTHON_SDK)
    for module_path in sorted(Path(__file__).parent.glob("impl_*.py")):
        module = importlib.import_module(f"tests.compat.{module_path.stem}")
        found.extend(module.IMPLEMENTATIONS)
    return found


IMPLEMENTATIONS: list[Implementation] = _discover()
