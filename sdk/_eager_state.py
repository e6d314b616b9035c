"""The object state an attempt knows locally: what Start sent (all of it or part), updated by the attempt's own writes.

A read is answered locally (GetEagerState) when the value is known, or by the
runtime (GetLazyState) when the state was sent only partially.
"""

from __future__ import annotations

from sdk._results import Result, Value, Void


class EagerState:
    """The state the runtime sent with Start, kept current with this attempt's writes."""

    def __init__(self, partial: bool, values: dict[str, bytes]) -> None:
        self.partial = partial
        self.values: dict[str, bytes | None] = dict(values)

    def get(self, key: str) -> Result | None:
        """Void or Value if known, None if only the runtime knows."""
        if key in self.values:
            value = self.values[key]
            return Void() if value is None else Value(value)
        return None if self.partial else Void()

    def keys(self) -> tuple[str, ...] | None:
        """The sorted keys if the state is complete, else None."""
        if self.partial:
            return None
        return tuple(sorted(key for key, value in self.values.items() if value is not None))

    def set(self, key: str, value: bytes) -> None:
        """Records a write of this attempt."""
        self.values[key] = value

    def clear(self, key: str) -> None:
        """Records a removal of this attempt."""
        self.values[key] = None

    def clear_all(self) -> None:
        """Records the removal of all state: afterwards everything is known (to be absent)."""
        self.values.clear()
        self.partial = False
