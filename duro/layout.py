"""The data dir's layout: the folders duro creates under it, and the one start-up check that each is a folder or absent.

Every folder a node (or one of its workers) makes under `--data-dir` is
named here, and `check_folders` looks at all of them, and at the data dir's
own path, before anything is created. Something else in such a place (a
file, a pipe, a symbolic link to nothing) stops start-up with one line that
names the path, what is there and what duro keeps there, instead of the
`FileExistsError` or `NotADirectoryError` the first `mkdir` would raise.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from partition_worker.snapshot_repository import partition_folder

LOG_FOLDER: Final = "log"
STATE_FOLDER: Final = "state"
SNAPSHOTS_FOLDER: Final = "snapshots"
SNAPSHOT_SCRATCH_FOLDER: Final = "snapshot-scratch"
SNAPSHOT_EXPORT_FOLDER: Final = "export"  # inside the scratch folder
WORKERS_FOLDER: Final = "workers"


class LayoutError(Exception):
    """A path where duro keeps a folder holds something else; the message names it, what is there and what was expected."""


def worker_dir(data_dir: Path, index: int) -> Path:
    """Where worker `index` of a node of several keeps its log, its state and its snapshots."""
    return data_dir / WORKERS_FOLDER / str(index)


def expected_folders(data_dir: Path, workers: int, partitions: int, embedded_log: bool, local_snapshots: bool) -> list[tuple[Path, str]]:
    """Each folder duro creates under `data_dir`, with what it keeps there, every parent before its children.

    `embedded_log`: the log is the embedded one (on Kafka there is no log
    folder). `local_snapshots`: snapshots go to the data dir (no
    `snapshots.repository` set).
    """
    folders = [(data_dir, "the data dir")]
    areas = [(data_dir, "the ")]
    if workers > 1:
        folders.append((data_dir / WORKERS_FOLDER, "the workers' folders"))
        areas = [(worker_dir(data_dir, index), f"worker {index}'s ") for index in range(workers)]
        folders += [(area, f"worker {index}'s log, state and snapshots") for index, (area, _) in enumerate(areas)]
    for area, whose in areas:
        if embedded_log:
            folders.append((area / LOG_FOLDER, f"{whose}embedded log"))
        folders.append((area / STATE_FOLDER, f"{whose}state store (RocksDB)"))
        if local_snapshots:
            folders.append((area / SNAPSHOTS_FOLDER, f"{whose}snapshots"))
            folders += [(area / SNAPSHOTS_FOLDER / partition_folder(p), f"{whose}snapshots of partition {p}") for p in range(partitions)]
        scratch = area / SNAPSHOT_SCRATCH_FOLDER
        folders += [(scratch, f"{whose}snapshot scratch space"), (scratch / SNAPSHOT_EXPORT_FOLDER, f"{whose}snapshot exports")]
    return folders


def check_folders(folders: list[tuple[Path, str]]) -> None:
    """Raise LayoutError for the first of `folders` (or a parent of the first) that exists and is not a folder.

    A symbolic link to a folder counts as the folder. Nothing is created.
    """
    if folders:
        first, _ = folders[0]
        for parent in reversed(first.absolute().parents):
            _check(parent, "a parent folder of the data dir")
    for path, purpose in folders:
        _check(path, purpose)


def _check(path: Path, purpose: str) -> None:
    found = _what_is_at(path)
    if found is not None:
        raise LayoutError(f"{path} is {found}, where duro keeps a folder ({purpose}); move it away or use another --data-dir")


def _what_is_at(path: Path) -> str | None:
    """What is at `path` if it is not a folder; None for a folder or nothing (a missing parent is reported as itself)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "a symbolic link to nothing" if os.path.islink(path) else None
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"
