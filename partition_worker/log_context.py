"""What a log line is about: the partition and the invocation of the task that logs it, carried in context variables.

The processor sets `partition` in its task; the invoker sets `invocation_id`
(and the attempt's partition) in each attempt's task. Tasks started from there
inherit both, so every line they log can name them (`duro/logs.py` adds them
to JSON lines) without each call passing them.
"""

from __future__ import annotations

from contextvars import ContextVar

partition: ContextVar[int | None] = ContextVar("duro_partition", default=None)
invocation_id: ContextVar[str | None] = ContextVar("duro_invocation_id", default=None)
