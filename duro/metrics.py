"""Prometheus metrics of the node's own wiring: appends that cross from one worker process to another."""

from __future__ import annotations

from wal.hot_metrics import HotCounter

WORKER_LINK_APPENDS_TOTAL = "duro_worker_link_appends_total"

link_appends = HotCounter(
    WORKER_LINK_APPENDS_TOTAL,
    "Appends this worker handed over its link to the worker owning their partition (the cross-worker hop), by that worker.",
    ["owner"],
)
