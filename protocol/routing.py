"""How invocations are addressed: the partition key of an object or workflow key, and every derived invocation id.

The ingress and the partition state machine must agree on these, so they live
in one place. Every id embeds its partition key, so a record about an
invocation can be routed by its id alone. Derived ids are deterministic: the
same inputs always give the same id, which is what makes idempotency keys,
workflow run-once and replayed calls work.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from protocol.ids import InvocationId, derive_uuid, idempotent_invocation_uuid, ulid_bytes, workflow_invocation_uuid

PARTITION_KEY_BITS = 64


def partition_key_for_key(key: str) -> int:
    """The partition key of an object or workflow key: a stable 64-bit hash of its UTF-8 bytes.

    The same key of any service maps to the same partition key, so state,
    inbox, promises and the workflow run of one key live on one partition.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def new_invocation_id(partition_key: int | None = None, place: Callable[[int], int] | None = None) -> str:
    """A fresh random id; unkeyed invocations get a random partition key (one read of the system's randomness for both).

    `place` maps that uniformly random 64-bit key to the one used: the ingress
    keeps it on partitions its own process owns (`ingress.local_partitions`).
    Any partition is right for an unkeyed invocation, so this is free to choose.
    """
    if partition_key is not None:
        return str(InvocationId.random(partition_key))
    entropy = os.urandom(PARTITION_KEY_BITS // 8 + 10)
    random_key = int.from_bytes(entropy[:8], "big")
    return str(InvocationId(random_key if place is None else place(random_key), ulid_bytes(entropy=entropy[8:])))


def keyed_or_random_id(key: str | None, place: Callable[[int], int] | None = None) -> str:
    """A fresh id for a call to `key` (keyed) or to an unkeyed service (random partition, through `place` if given)."""
    return new_invocation_id(partition_key_for_key(key) if key is not None else None, place)


def workflow_invocation_id(service: str, key: str) -> str:
    """The one id of a workflow's `run` for `key`."""
    return str(InvocationId(partition_key_for_key(key), workflow_invocation_uuid(service, key)))


def idempotent_invocation_id(service: str, key: str | None, handler: str, idempotency_key: str) -> str:
    """The id of a request with an idempotency key: same target and key, same id."""
    partition_key = partition_key_for_key(key if key is not None else idempotency_key)
    return str(InvocationId(partition_key, idempotent_invocation_uuid(service, handler, idempotency_key, key)))


def callee_invocation_id(caller_invocation_id: str, command_index: int, key: str | None) -> str:
    """The id of an invocation started by a caller's Call/OneWayCall command number `command_index`.

    Derived from the caller and the command, so that applying the same journal
    again yields the same callee.
    """
    uuid = derive_uuid("call", caller_invocation_id, str(command_index))
    if key is not None:
        partition_key = partition_key_for_key(key)
    else:
        partition_key = int.from_bytes(uuid[:8], "big")
    return str(InvocationId(partition_key, uuid))


def partition_key_of(invocation_id: str) -> int:
    """The partition key embedded in an invocation id (raises ValueError naming the expected form)."""
    return InvocationId.parse(invocation_id).partition_key
