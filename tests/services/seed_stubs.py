"""The external calls the seed examples make (payments, subscriptions, user store, e-mail), as recording stubs.

Each call appends a line to the file named by `DURO_TEST_SIDE_EFFECTS` (if set)
so tests can count executions and read the verification secret.
"""

from __future__ import annotations

import os
from typing import Any


def _record(line: str) -> None:
    path = os.environ.get("DURO_TEST_SIDE_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as sink:
            sink.write(line + "\n")


def create_recurring_payment(credit_card: str, payment_id: str) -> str:
    _record(f"payment {credit_card} {payment_id}")
    return f"payref-{payment_id}"


def create_subscription(user_id: str, subscription: str, pay_ref: str) -> str:
    _record(f"subscription {user_id} {subscription} {pay_ref}")
    return "ok"


def create_user_entry(user_id: str, user: Any) -> None:
    _record(f"user-entry {user_id}")


def send_verification_email(user: Any, secret: str) -> None:
    _record(f"email {user.email} {secret}")
