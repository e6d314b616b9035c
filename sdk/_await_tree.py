"""Resolves await trees against the notifications at hand and renders unresolved ones as protocol Futures.

A leaf is resolved when its notification is available (a handle whose
notification was already taken counts as resolved); an inner node combines
its children with its combinator. When the SDK suspends, the tree goes to the
runtime: V7 as a `Future` (resolved children of "all" nodes left out), V5/V6
as the flat id lists of the old Suspension message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from protocol import pb
from sdk._results import (
    Await,
    AwaitHandle,
    Combinator,
    CompletionId,
    Failure,
    NotificationId,
    Result,
    SignalId,
    SignalName,
)


class Resolution(enum.Enum):
    """The state of an await tree or leaf."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def resolve(tree: Await, handles: Mapping[int, NotificationId], ready: Mapping[NotificationId, Result]) -> Resolution:
    """The state of `tree` given the handle table and the available notifications."""
    if isinstance(tree, AwaitHandle):
        return _leaf(tree.handle, handles, ready)
    return _combine(tree.combinator, [resolve(child, handles, ready) for child in tree.children])


def to_future(tree: Await, handles: Mapping[int, NotificationId], ready: Mapping[NotificationId, Result]) -> pb.Future:
    """The V7 Future for `tree`: leaves inlined as ids, resolved children of All* nodes left out."""
    if isinstance(tree, AwaitHandle):
        future = pb.Future(combinator_type=pb.CombinatorType.FIRST_COMPLETED)
        _add_leaf(future, handles.get(tree.handle))
        return future
    future = pb.Future(combinator_type=tree.combinator.name)
    prune_resolved = tree.combinator in (Combinator.ALL_COMPLETED, Combinator.ALL_SUCCEEDED_OR_FIRST_FAILED)
    for child in tree.children:
        if prune_resolved and resolve(child, handles, ready) is not Resolution.PENDING:
            continue
        if isinstance(child, AwaitHandle):
            _add_leaf(future, handles.get(child.handle))
        else:
            future.nested_futures.append(to_future(child, handles, ready))
    return future


def flatten_into(future: pb.Future, message: pb.SuspensionMessage) -> None:
    """Fills the V5/V6 flat lists of a Suspension from a Future tree."""
    message.waiting_completions.extend(future.waiting_completions)
    message.waiting_signals.extend(future.waiting_signals)
    message.waiting_named_signals.extend(future.waiting_named_signals)
    for nested in future.nested_futures:
        flatten_into(nested, message)


def _leaf(handle: int, handles: Mapping[int, NotificationId], ready: Mapping[NotificationId, Result]) -> Resolution:
    notification_id = handles.get(handle)
    if notification_id is None:
        return Resolution.SUCCEEDED
    result = ready.get(notification_id)
    if result is None:
        return Resolution.PENDING
    return Resolution.FAILED if isinstance(result, Failure) else Resolution.SUCCEEDED


def _combine(combinator: Combinator, states: list[Resolution]) -> Resolution:
    done = [state for state in states if state is not Resolution.PENDING]
    everything_done = len(done) == len(states)
    if combinator is Combinator.FIRST_COMPLETED:
        return Resolution.SUCCEEDED if done else Resolution.PENDING
    if combinator is Combinator.ALL_COMPLETED:
        return Resolution.SUCCEEDED if everything_done else Resolution.PENDING
    if combinator is Combinator.FIRST_SUCCEEDED_OR_ALL_FAILED:
        if Resolution.SUCCEEDED in done:
            return Resolution.SUCCEEDED
        return Resolution.FAILED if everything_done else Resolution.PENDING
    if Resolution.FAILED in done:
        return Resolution.FAILED
    return Resolution.SUCCEEDED if everything_done else Resolution.PENDING


def _add_leaf(future: pb.Future, notification_id: NotificationId | None) -> None:
    if isinstance(notification_id, CompletionId):
        future.waiting_completions.append(notification_id.value)
    elif isinstance(notification_id, SignalId):
        future.waiting_signals.append(notification_id.value)
    elif isinstance(notification_id, SignalName):
        future.waiting_named_signals.append(notification_id.value)
