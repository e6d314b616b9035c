"""The three seed examples (SubscriptionService, ShoppingCart, UserSignup) on duro's SDK, with their types and stub side effects.

The handlers are written exactly as the seed (Restate's "Services" page) writes
them; only the import line names duro's SDK. The external calls they make are
stubs: each execution appends one tab-separated line to the file named by the
environment variable DURO_EXAMPLES_SIDE_EFFECT_LOG (when set), so tests can
count how often a side effect really ran.
"""

from __future__ import annotations

import json
import os
import threading
import uuid

from pydantic import BaseModel

import sdk as restate
from sdk import Context, ObjectContext, ObjectSharedContext, WorkflowContext, WorkflowSharedContext

SIDE_EFFECT_LOG_ENV = "DURO_EXAMPLES_SIDE_EFFECT_LOG"
_LOG_LOCK = threading.Lock()


class SubscriptionRequest(BaseModel):
    """Subscribe a user, paying with one credit card, to several products."""

    user_id: str
    credit_card: str
    subscriptions: list[str]


class Item(BaseModel):
    """One line of a shopping cart."""

    product_id: str = ""
    price: float
    quantity: int = 1


class Cart(BaseModel):
    """A shopping cart: its items."""

    items: list[Item] = []


class User(BaseModel):
    """A user signing up."""

    name: str
    email: str


def record_side_effect(name: str, *fields: str) -> None:
    """Prints the side effect (so a person trying the examples sees it) and appends it to the side-effect log, if configured."""
    print(f"[examples] {name}: {' '.join(fields)}", flush=True)
    path = os.environ.get(SIDE_EFFECT_LOG_ENV)
    if not path:
        return
    line = "\t".join((name, *fields)) + "\n"
    with _LOG_LOCK, open(path, "a", encoding="utf-8") as log:
        log.write(line)


def create_recurring_payment(credit_card: str, payment_id: str) -> str:
    """Stub of a payment provider: sets up a recurring payment and returns its reference."""
    record_side_effect("create_recurring_payment", credit_card, payment_id)
    return f"payref-{payment_id}"


def create_subscription(user_id: str, subscription: str, pay_ref: str) -> str:
    """Stub of a subscription backend: subscribes the user to one product."""
    record_side_effect("create_subscription", user_id, subscription, pay_ref)
    return "SUCCESS"


def create_user_entry(user_id: str, user: User) -> None:
    """Stub of a user database: stores the new user."""
    record_side_effect("create_user_entry", user_id, json.dumps(user.model_dump()))


def send_verification_email(user: User, secret: str) -> None:
    """Stub of a mailer: sends the verification link carrying `secret`."""
    record_side_effect("send_verification_email", user.email, secret)


# --- the seed's handlers, verbatim ------------------------------------------

subscription_service = restate.Service("SubscriptionService")


@subscription_service.handler()
async def add(ctx: Context, req: SubscriptionRequest) -> None:
    payment_id = str(uuid.uuid4())

    pay_ref = await ctx.run_typed(
        "pay",
        create_recurring_payment,
        credit_card=req.credit_card,
        payment_id=payment_id,
    )

    for subscription in req.subscriptions:
        await ctx.run_typed(
            "add-" + subscription,
            create_subscription,
            user_id=req.user_id,
            subscription=subscription,
            pay_ref=pay_ref,
        )


cart_object = restate.VirtualObject("ShoppingCart")


@cart_object.handler()
async def add_item(ctx: ObjectContext, item: Item) -> Cart:
    cart = await ctx.get("cart", type_hint=Cart) or Cart()
    cart.items.append(item)
    ctx.set("cart", cart)
    return cart


@cart_object.handler(kind="shared")
async def get_total(ctx: ObjectSharedContext) -> float:
    cart = await ctx.get("cart", type_hint=Cart) or Cart()
    return sum(item.price * item.quantity for item in cart.items)


signup_workflow = restate.Workflow("UserSignup")


@signup_workflow.main()
async def run(ctx: WorkflowContext, user: User) -> bool:
    # workflow ID = user ID; workflow runs once per user
    user_id = ctx.key()

    await ctx.run_typed("create", create_user_entry, user_id=user_id, user=user)

    secret = str(ctx.uuid())
    await ctx.run_typed("mail", send_verification_email, user=user, secret=secret)

    click_secret = await ctx.promise("email-link-clicked", type_hint=str).value()
    return click_secret == secret


@signup_workflow.handler()
async def click(ctx: WorkflowSharedContext, secret: str) -> None:
    await ctx.promise("email-link-clicked", type_hint=str).resolve(secret)
