"""How long a completed invocation is kept: Restate's retention rules, from a handler's declared options and the node's defaults.

Three retentions are declared per service or handler (manifest, admin API), each
falling back to a node default (Restate 1.7: 24 hours each):

- the journal retention: keep the completed invocation's journal (and so its
  status and outcome) this long;
- the idempotency retention: keep the outcome of an invocation that had an
  idempotency key this long, so a retry with the key gets the same answer;
- the workflow completion retention: keep a workflow run's outcome, state and
  promises this long.

An invocation's retention is fixed when its `Invoke` is written (by the ingress,
or by the invoker for a call a handler makes) and travels in the record, so
apply never reads node settings. `InvocationRetention.completion_ms` bounds how
long the status and outcome stay; `journal_ms` how long the journal stays, never
longer than the status (Restate's `compute_retention`).
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class InvocationRetention:
    """The retention of one invocation: status and outcome for `completion_ms`, journal for `journal_ms` (<= completion_ms)."""

    completion_ms: int
    journal_ms: int

    def __post_init__(self) -> None:
        assert 0 <= self.journal_ms <= self.completion_ms, f"journal retention {self.journal_ms} exceeds completion {self.completion_ms}"


NO_RETENTION = InvocationRetention(0, 0)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The three retentions that apply to a handler's invocations, in milliseconds (0: not kept)."""

    journal_ms: int = DAY_MS
    idempotency_ms: int = DAY_MS
    workflow_completion_ms: int = DAY_MS

    def resolve(self, journal_ms: int | None, idempotency_ms: int | None, workflow_completion_ms: int | None) -> RetentionPolicy:
        """This policy (the node's defaults) overridden by what a service or handler declares (None: not declared)."""
        return RetentionPolicy(
            self.journal_ms if journal_ms is None else journal_ms,
            self.idempotency_ms if idempotency_ms is None else idempotency_ms,
            self.workflow_completion_ms if workflow_completion_ms is None else workflow_completion_ms,
        )

    def for_invocation(self, *, is_workflow_run: bool, has_idempotency_key: bool) -> InvocationRetention:
        """The retention of one invocation of this handler.

        A workflow run keeps its outcome for the workflow completion retention,
        an invocation with an idempotency key for the idempotency retention; in
        both cases the journal at most as long. Any other invocation is kept
        (outcome and journal) for the journal retention, or not at all.
        """
        if is_workflow_run or has_idempotency_key:
            completion_ms = self.workflow_completion_ms if is_workflow_run else self.idempotency_ms
            return InvocationRetention(completion_ms, min(self.journal_ms, completion_ms))
        return InvocationRetention(self.journal_ms, self.journal_ms)


DEFAULT_RETENTION = RetentionPolicy()  # Restate 1.7's defaults
