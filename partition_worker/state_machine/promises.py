"""Durable promises of a workflow: completed outcome or the GetPromise commands waiting for it."""

from __future__ import annotations

from dataclasses import dataclass

from wal.records import Outcome, pack_struct, unpack_struct


@dataclass(frozen=True, slots=True)
class Promise:
    outcome: Outcome | None
    waiters: tuple[tuple[str, int], ...]  # (invocation id, completion id)

    @staticmethod
    def load(raw: bytes | None) -> Promise:
        if raw is None:
            return Promise(None, ())
        promise: Promise = unpack_struct(Promise, raw)
        return Promise(promise.outcome, tuple((invocation_id, completion_id) for invocation_id, completion_id in promise.waiters))

    def with_waiter(self, invocation_id: str, completion_id: int) -> Promise:
        return Promise(self.outcome, (*self.waiters, (invocation_id, completion_id)))

    def dump(self) -> bytes:
        return pack_struct(self)
