"""The compatibility matrix's Java columns: the official Restate Java SDK (`dev.restate:sdk-java-http`) over h2c and HTTP/1.1.

The endpoint is `tests/compat/java` (Maven, Java 17, the `sdk-api-gen`
annotation processor, Jackson JSON), built by `scripts/setup.d/30-java.sh`
into `target/duro-compat-java.jar` with its dependencies in `target/lib/`.
No V7 column: sdk-java 2.4.0 speaks service protocol V5 to V6 only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.compat.implementations import Implementation, SeedNames

JAVA_DIR = Path(__file__).resolve().parent / "java"
JAR = JAVA_DIR / "target" / "duro-compat-java.jar"
JVM_OPTIONS = ["-XX:+UseSerialGC", "-Xmx384m", "-XX:TieredStopAtLevel=1"]

# Set DURO_COMPAT_ON_RESTATE=1 to run these columns on the real Restate server too (fixed ports 8080/9070).
ON_RESTATE = os.environ.get("DURO_COMPAT_ON_RESTATE") == "1"


def _sdk_version() -> str:
    match = re.search(
        r"<restate\.version>([^<]+)</restate\.version>",
        (JAVA_DIR / "pom.xml").read_text(),
    )
    return f"dev.restate:sdk-java-http {match.group(1) if match else '?'}"


JAVA_SEEDS = SeedNames(
    subscription_service="SubscriptionService",
    subscription_add="add",
    cart="ShoppingCartObject",
    cart_add_item="addItem",
    cart_get_total="getTotal",
    signup="SignupWorkflow",
    signup_run="run",
    signup_click="click",
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
    click_body=lambda secret: {"secret": secret},
)


def _java(use_http_11: bool) -> Implementation:
    return Implementation(
        name="java-sdk http1.1" if use_http_11 else "java-sdk h2",
        language="java",
        command=["java", *JVM_OPTIONS, "-jar", str(JAR), "{port}"],
        cwd=JAVA_DIR,
        use_http_11=use_http_11,
        build_marker=JAR,
        seeds=JAVA_SEEDS,
        version=_sdk_version(),
        on_restate=ON_RESTATE,
    )


IMPLEMENTATIONS: list[Implementation] = [
    _java(use_http_11=False),
    _java(use_http_11=True),
]
