"""Names what an SDK attempt waits for and what it gets back: notification ids, results and await trees.

A notification is identified by a completion id (answers to commands), a signal
index (cancel, awakeables) or a signal name. Its result is one of a handful of
frozen values. An `Await` tree combines notification handles the way
`select`/`gather` do; the machine resolves it and, when it cannot, sends it to
the runtime as the V7 `Future` it suspends on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class CompletionId:
    """A notification completing a command; ids are allocated from 1."""

    value: int


@dataclass(frozen=True)
class SignalId:
    """A signal by index: 1 is CANCEL, awakeables use 17 and up."""

    value: int


@dataclass(frozen=True)
class SignalName:
    """A named signal."""

    value: str


NotificationId = Union[CompletionId, SignalId, SignalName]


@dataclass(frozen=True)
class Void:
    """A notification carrying no value (sleep fired, promise completed, state absent)."""


@dataclass(frozen=True)
class Value:
    """A notification carrying serialized bytes."""

    content: bytes


@dataclass(frozen=True)
class Failure:
    """A terminal failure: an HTTP-like code and a message."""

    code: int
    message: str
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class InvocationIdResult:
    """The id of an invocation started by a Call or OneWayCall."""

    invocation_id: str


@dataclass(frozen=True)
class StateKeys:
    """The state keys of the current object."""

    keys: tuple[str, ...]


Result = Union[Void, Value, Failure, InvocationIdResult, StateKeys]


class Combinator(enum.IntEnum):
    """How an await node combines its children; the values are the V7 wire values."""

    FIRST_COMPLETED = 1
    ALL_COMPLETED = 2
    FIRST_SUCCEEDED_OR_ALL_FAILED = 3
    ALL_SUCCEEDED_OR_FIRST_FAILED = 4


@dataclass(frozen=True)
class AwaitHandle:
    """A leaf: wait for the notification behind one handle."""

    handle: int


@dataclass(frozen=True)
class AwaitAll:
    """An inner node combining children with `combinator`."""

    combinator: Combinator
    children: tuple[Await, ...] = field(default_factory=tuple)


Await = Union[AwaitHandle, AwaitAll]


def first_completed(*children: Await) -> AwaitAll:
    """Completes when any child completes (success or failure)."""
    return AwaitAll(Combinator.FIRST_COMPLETED, tuple(children))


def all_completed(*children: Await) -> AwaitAll:
    """Completes when every child completed (success or failure)."""
    return AwaitAll(Combinator.ALL_COMPLETED, tuple(children))


def handles_of(tree: Await) -> list[int]:
    """Every handle in `tree`, depth first."""
    if isinstance(tree, AwaitHandle):
        return [tree.handle]
    return [handle for child in tree.children for handle in handles_of(child)]
