"""The TypeScript columns of the compatibility matrix: the official `@restatedev/restate-sdk` on Node, over HTTP/2 and HTTP/1.1.

The services live in `tests/compat/typescript/src/` and are compiled by
`scripts/setup.d/20-typescript.sh`; the compiled endpoint is the build marker.
The seed examples follow the seed's TypeScript code: camelCase handler names
(`addItem`, `getTotal`) and request objects (`{userId, creditCard, subscriptions}`,
`{productId, price, quantity}`, `{secret}`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.compat.implementations import Implementation, SeedNames

TYPESCRIPT_DIR = Path(__file__).resolve().parent / "typescript"
ENDPOINT_SCRIPT = TYPESCRIPT_DIR / "dist" / "endpoint.js"


def _camel_subscription(user_id: str, card: str, subscriptions: list[str]) -> dict[str, Any]:
    return {"userId": user_id, "creditCard": card, "subscriptions": subscriptions}


def _camel_item(product: str, price: float, quantity: int) -> dict[str, Any]:
    return {"productId": product, "price": price, "quantity": quantity}


def _user(name: str, email: str) -> dict[str, Any]:
    return {"name": name, "email": email}


def _click(secret: str) -> dict[str, Any]:
    return {"secret": secret}


TYPESCRIPT_SEEDS = SeedNames(
    subscription_service="SubscriptionService",
    subscription_add="add",
    cart="ShoppingCart",
    cart_add_item="addItem",
    cart_get_total="getTotal",
    signup="UserSignup",
    signup_run="run",
    signup_click="click",
    subscription_body=_camel_subscription,
    item_body=_camel_item,
    user_body=_user,
    click_body=_click,
)


def _locked_version(package: str) -> str:
    """The version of `package` that package-lock.json pins, or "?" when the lock file lacks it."""
    lock = TYPESCRIPT_DIR / "package-lock.json"
    try:
        packages = json.loads(lock.read_text())["packages"]
        return str(packages[f"node_modules/{package}"]["version"])
    except (OSError, KeyError, ValueError):
        return "?"


def _command(transport: str) -> list[str]:
    node = shutil.which("node") or "node"
    return [node, str(ENDPOINT_SCRIPT), "--port", "{port}", "--transport", transport]


_VERSION = f"@restatedev/restate-sdk {_locked_version('@restatedev/restate-sdk')} (Node, Promise.withResolvers polyfill)"

IMPLEMENTATIONS: list[Implementation] = [
    Implementation(
        "typescript-sdk h2",
        "typescript",
        _command("h2"),
        cwd=TYPESCRIPT_DIR,
        build_marker=ENDPOINT_SCRIPT,
        seeds=TYPESCRIPT_SEEDS,
        version=_VERSION,
        v7_column=True,  # the SDK's shared core speaks V5 to V7
    ),
    Implementation(
        "typescript-sdk http1.1",
        "typescript",
        _command("http1.1"),
        cwd=TYPESCRIPT_DIR,
        use_http_11=True,
        build_marker=ENDPOINT_SCRIPT,
        seeds=TYPESCRIPT_SEEDS,
        version=_VERSION,
    ),
]
