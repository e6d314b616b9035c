"""The seed document's three examples (subscription service, shopping cart, signup workflow), in every implementation."""

from __future__ import annotations

import json
import uuid

from tests.compat.conftest import Deployment
from tests.processes import http, wait_until


def test_subscription_service_runs_each_side_effect_once(deployment: Deployment) -> None:
    names = deployment.seeds
    user, card = f"user-{uuid.uuid4().hex[:6]}", f"card-{uuid.uuid4().hex[:6]}"
    body = names.subscription_body(user, card, ["netflix", "spotify"])
    status, _, response = deployment.call(f"/{names.subscription_service}/{names.subscription_add}", body)
    assert status == 200, response
    payments = deployment.side_effect_lines(f"payment {card} ")
    assert len(payments) == 1, "the payment was charged exactly once"
    pay_ref = "payref-" + payments[0].split()[-1]
    for subscription in ("netflix", "spotify"):
        assert deployment.side_effect_lines(f"subscription {user} {subscription} ") == [f"subscription {user} {subscription} {pay_ref}"]


def test_shopping_cart_adds_items_and_totals_them(deployment: Deployment) -> None:
    names = deployment.seeds
    cart = f"cart-{uuid.uuid4().hex[:6]}"
    for product, price, quantity in (("apple", 1.5, 4), ("pear", 2.25, 2)):
        status, _, body = deployment.call(f"/{names.cart}/{cart}/{names.cart_add_item}", names.item_body(product, price, quantity))
        assert status == 200, body
    status, _, body = deployment.call(f"/{names.cart}/{cart}/{names.cart_get_total}")
    assert status == 200, body
    assert json.loads(body) == 1.5 * 4 + 2.25 * 2


def test_signup_workflow_verifies_the_emailed_secret(deployment: Deployment) -> None:
    names = deployment.seeds
    user_id = f"u-{uuid.uuid4().hex[:6]}"
    email = f"{user_id}@example.com"
    status, _, body = deployment.call(f"/{names.signup}/{user_id}/{names.signup_run}/send", names.user_body("Ada", email))
    assert status == 202 and json.loads(body)["status"] == "Accepted", body
    line = wait_until(lambda: deployment.side_effect_lines(f"email {email} "), 20, "the verification e-mail")[0]
    secret = line.split()[-1]
    status, _, body = http("GET", f"{deployment.ingress}/restate/workflow/{names.signup}/{user_id}/output")
    assert status == 470, body
    status, _, body = deployment.call(f"/{names.signup}/{user_id}/{names.signup_click}", names.click_body(secret))
    assert status == 200, body
    status, _, body = http("GET", f"{deployment.ingress}/restate/workflow/{names.signup}/{user_id}/attach")
    assert (status, json.loads(body)) == (200, True)
    assert len(deployment.side_effect_lines(f"user-entry {user_id}")) == 1
