"""Produces `add_item` events for the seed's shopping cart to a Kafka topic, keyed by user: `python -m examples.cart_events`.

Each event is one `Item` as JSON (what `ShoppingCart/add_item` takes) with the
user id as the record key, so a subscription from the topic to
`service://ShoppingCart/add_item` adds it to that user's cart, one event at a
time per user, in the order produced. The script prints each user's expected
share of the total, to compare with `POST /ShoppingCart/<user>/get_total`.

    python -m examples.cart_events --bootstrap 127.0.0.1:9092 --topic cart-events --users ada,bob --items 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

if __package__ in (None, ""):  # run as `python examples/cart_events.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.services import Item

CATALOG = (("tea", 3.5), ("coffee", 4.0), ("cake", 2.5), ("juice", 3.0))


def items_for(user_index: int, count: int) -> list[Item]:
    """The `count` items a user adds: products from the catalog in turn, quantities 1 to 3 (the same every run)."""
    items = []
    for i in range(count):
        product_id, price = CATALOG[(user_index + i) % len(CATALOG)]
        items.append(Item(product_id=product_id, price=price, quantity=1 + (user_index + i) % 3))
    return items


async def produce(bootstrap: str, topic: str, users: list[str], count: int, partitions: int) -> dict[str, float]:
    """Create `topic` if it is missing, write every user's events (acks=all), and return what they add to each user's total."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    totals: dict[str, float] = {}
    try:
        for index, user in enumerate(users):
            for item in items_for(index, count):
                await producer.send_and_wait(topic, json.dumps(item.model_dump()).encode(), key=user.encode())
                totals[user] = totals.get(user, 0.0) + item.price * item.quantity
    finally:
        await producer.stop()
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description="Produce ShoppingCart add_item events to Kafka, keyed by user.")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (default 127.0.0.1:9092)")
    parser.add_argument("--topic", default="cart-events", help="topic to write to; created if missing (default cart-events)")
    parser.add_argument("--users", default="ada,bob", help="comma-separated user ids, the record keys (default ada,bob)")
    parser.add_argument("--items", type=int, default=3, help="events per user (default 3)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topic if it is created (default 4)")
    arguments = parser.parse_args()
    users = [user for user in arguments.users.split(",") if user]
    totals = asyncio.run(produce(arguments.bootstrap, arguments.topic, users, arguments.items, arguments.partitions))
    for user, total in totals.items():
        print(f"{user}: {arguments.items} add_item events produced; they add {total:.2f} to the cart's total")


if __name__ == "__main__":
    main()
