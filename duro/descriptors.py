"""The process's file descriptors: the soft limit raised to the hard one, a reserve for the log and the state store, the rest for connections.

Every open connection takes a descriptor, and so does every segment file,
RocksDB table, outgoing connection and pipe. `budget_connections` raises the
soft limit (`ulimit -n`) to the hard one, keeps `reserved_file_descriptors`
for everything but incoming connections, and caps the ingress and admin
connections so that together they fit in what is left; it logs the result
in one line, and refuses to start when too little is left.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("duro.node")

MIN_INGRESS_CONNECTIONS: Final = 16
_UNLIMITED_CAP: Final = 1 << 20  # what an unlimited hard limit is raised to


class DescriptorBudgetError(Exception):
    """Too few descriptors for the reserve and a useful number of connections; the message says what to change."""


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    descriptor_limit: int
    max_ingress_connections: int
    max_admin_connections: int


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return _UNLIMITED_CAP if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:  # e.g. a hard limit above the kernel's nr_open
        log.warning("could not raise the file descriptor limit from %d to %d: %s", soft, target, error)
        return soft
    return target


def budget_connections(max_ingress: int, max_admin: int, reserved: int) -> ConnectionBudget:
    """Raise the descriptor limit and fit the connection caps into what the reserve leaves; raises DescriptorBudgetError."""
    limit = raise_descriptor_limit()
    room = limit - reserved
    admin = min(max_admin, max(1, room // 8))
    ingress = min(max_ingress, room - admin)
    if ingress < MIN_INGRESS_CONNECTIONS:
        raise DescriptorBudgetError(
            f"the process may open {limit} files (ulimit -n, hard limit included); with reserved_file_descriptors={reserved}"
            f" that leaves {max(room, 0)} for connections, fewer than {MIN_INGRESS_CONNECTIONS + 1}: raise the limit"
            " (ulimit -n, LimitNOFILE in systemd, nofile in the container runtime) or lower reserved_file_descriptors"
        )
    budget = ConnectionBudget(limit, ingress, admin)
    capped = (ingress, admin) != (max_ingress, max_admin)
    log.log(
        logging.WARNING if capped else logging.INFO,
        "file descriptors: limit %d, %d reserved for the log, the state store and outgoing connections; at most %d ingress"
        " and %d admin connections%s",
        limit, reserved, ingress, admin,
        f" (lowered from max_ingress_connections={max_ingress}, max_admin_connections={max_admin} to fit)" if capped else "",
    )  # fmt: skip
    return budget
