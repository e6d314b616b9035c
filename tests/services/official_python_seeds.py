"""The three seed examples, Python version, on the official Restate Python SDK.

The handlers are exactly the seed's; the request types and the stubbed
external calls are defined beside them (tests/services/seed_stubs.py).
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from tests.services.sdk_choice import restate
from tests.services.seed_stubs import create_recurring_payment, create_subscription, create_user_entry, send_verification_email

Context = restate.Context
ObjectContext = restate.ObjectContext
ObjectSharedContext = restate.ObjectSharedContext
WorkflowContext = restate.WorkflowContext
WorkflowSharedContext = restate.WorkflowSharedContext


class SubscriptionRequest(BaseModel):
    user_id: str
    credit_card: str
    subscriptions: list[str]


class Item(BaseModel):
    product_id: str = ""
    price: float
    quantity: int


class Cart(BaseModel):
    items: list[Item] = []


class User(BaseModel):
    name: str
    email: str


# --- seed: Basic Service -----------------------------------------------------

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


# --- seed: Virtual Object ----------------------------------------------------

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


# --- seed: Workflow ----------------------------------------------------------

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


SEED_SERVICES = [subscription_service, cart_object, signup_workflow]
