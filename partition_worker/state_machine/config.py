"""What the state machine knows besides the log: the partition it applies.

Nothing else: every setting apply needs (retry policies, retentions) is
chosen where a record is written and travels in the record, so that replaying
one log gives the same rows on nodes with different settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StateMachineConfig:
    partition: int

    @property
    def producer_id(self) -> str:
        """The name this partition's outbox messages carry for deduplication."""
        return f"p{self.partition}"
