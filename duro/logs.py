"""The node's log output: plain text lines, or JSON lines (`--log-format json`) naming node, partition and invocation.

Every JSON line carries `time` (RFC 3339, UTC, milliseconds), `level`,
`logger`, `message` and `node` (and `worker` in a node of several worker
processes, whose text lines say `worker N` too); a line logged on behalf of a partition or an
invocation (the processor's and invoker's tasks, `partition_worker/log_context.py`)
also carries `partition` and `invocation_id`; an exception adds `exception`
with its traceback. Fields passed in a call's `extra` with those names win.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

from partition_worker import log_context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, node_id: int, worker: int | None = None) -> None:
        super().__init__()
        self._node_id = node_id
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _rfc3339_ms(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "node": self._node_id,
        }
        if self._worker is not None:
            line["worker"] = self._worker
        partition = getattr(record, "partition", None)
        if partition is None:
            partition = log_context.partition.get()
        if partition is not None:
            line["partition"] = partition
        invocation_id = getattr(record, "invocation_id", None) or log_context.invocation_id.get()
        if invocation_id is not None:
            line["invocation_id"] = invocation_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: Literal["text", "json"], node_id: int, worker: int | None = None) -> None:
    """Route every logger (duro's, uvicorn's, aiokafka's) through one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    text = TEXT_FORMAT if worker is None else TEXT_FORMAT.replace("%(levelname)s", f"%(levelname)s worker {worker}")
    handler.setFormatter(JsonFormatter(node_id, worker) if log_format == "json" else logging.Formatter(text))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _rfc3339_ms(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"
