"""The compatibility matrix's Go columns: the official Restate Go SDK (`github.com/restatedev/sdk-go`) over h2c and HTTP/1.1.

The endpoint is `tests/compat/go` (a Go module pinned by go.mod + go.sum),
built by `scripts/setup.d/40-go.sh` into `bin/compat-go`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.compat.implementations import Implementation, SeedNames

GO_DIR = Path(__file__).resolve().parent / "go"
BINARY = GO_DIR / "bin" / "compat-go"

# Set DURO_COMPAT_ON_RESTATE=1 to run these columns on the real Restate server too (fixed ports 8080/9070).
ON_RESTATE = os.environ.get("DURO_COMPAT_ON_RESTATE") == "1"


def _sdk_version() -> str:
    match = re.search(r"github\.com/restatedev/sdk-go (v\S+)", (GO_DIR / "go.mod").read_text())
    return f"github.com/restatedev/sdk-go {match.group(1) if match else '?'}"


# restate.Reflect names handlers after the Go methods; JSON field names come from the struct tags in seeds.go.
GO_SEEDS = SeedNames(
    subscription_service="SubscriptionService",
    subscription_add="Add",
    cart="ShoppingCartObject",
    cart_add_item="AddItem",
    cart_get_total="GetTotal",
    signup="SignupWorkflow",
    signup_run="Run",
    signup_click="Click",
    subscription_body=lambda user_id, card, subscriptions: {
        "userId": user_id,
        "creditCard": card,
        "subscriptions": subscriptions,
    },
    item_body=lambda product, price, quantity: {
        "productId": product,
        "price": price,
        "quantity": quantity,
    },
    user_body=lambda name, email: {"name": name, "email": email},
    click_body=lambda secret: secret,
)


def _go(use_http_11: bool) -> Implementation:
    return Implementation(
        name="go-sdk http1.1" if use_http_11 else "go-sdk h2",
        language="go",
        command=[
            str(BINARY),
            "-port",
            "{port}",
            *(["-request-response"] if use_http_11 else []),
        ],
        cwd=GO_DIR,
        use_http_11=use_http_11,
        build_marker=BINARY,
        seeds=GO_SEEDS,
        version=_sdk_version(),
        on_restate=ON_RESTATE,
        v7_column=not use_http_11,  # the SDK's shared core (WASM) speaks V5 to V7
    )


IMPLEMENTATIONS: list[Implementation] = [_go(use_http_11=False), _go(use_http_11=True)]
