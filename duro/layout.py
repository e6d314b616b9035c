"""The data dir's layout: the folders and files duro creates under it, and the start-up checks that each is what it should be or absent.

Every folder a node (or one of its workers) makes under `--data-dir` is
named here, and `check_folders` looks at all of them, and at the data dir's
own path, before anything is created. Something else in such a place (a
file, a pipe, a symbolic link to nothing) stops start-up with one line that
names the path, what is there and what duro keeps there, instead of the
`FileExistsError` or `NotADirectoryError` the first `mkdir` would raise.
Conversely a folder where duro keeps a file (`duro.json`, `registry.json`,
the embedded log's `duro-log.json`, ...) stops it the same way
(`check_files`), instead of an `IsADirectoryError` traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from ingress.registry import REGISTRY_FILE
from ingress.subscriptions import SUBSCRIPTIONS_FILE
from partition_worker.snapshot_repository import partition_folder
from wal.embedded_files import LOCK_FILE_NAME, METADATA_FILE_NAME, START_FILE_NAME

LOG_FOLDER: Final = "log"
STATE_FOLDER: Final = "state"
SNAPSHOTS_FOLDER: Final = "snapshots"
SNAPSHOT_SCRATCH_FOLDER: Final = "snapshot-scratch"
SNAPSHOT_EXPORT_FOLDER: Final = "export"  # inside the scratch folder
WORKERS_FOLDER: Final = "workers"
NODE_FILE: Final = "duro.json"  # the data dir's partition and worker counts and log id
DATA_DIR_LOCK_FILE: Final = "duro.lock"  # held by a node of several workers (its supervisor and every worker)


class LayoutError(Exception):
    """A path where duro keeps a folder (or a file) holds something else; the message names it, what is there and what was expected."""


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


def node_files(data_dir: Path) -> list[tuple[Path, str]]:
    """The files duro keeps in the data dir itself, with what each holds."""
    return [
        (data_dir / NODE_FILE, "the data dir's partition and worker counts"),
        (data_dir / DATA_DIR_LOCK_FILE, "the data dir's lock"),
        (data_dir / REGISTRY_FILE, "the deployment registry"),
        (data_dir / SUBSCRIPTIONS_FILE, "the subscriptions"),
    ]


def expected_files(data_dir: Path, workers: int, embedded_log: bool) -> list[tuple[Path, str]]:
    """Each file duro keeps under `data_dir` outside the state store (RocksDB names its own), with what it holds."""
    files = node_files(data_dir)
    if embedded_log:
        areas = [(worker_dir(data_dir, index), f"worker {index}'s ") for index in range(workers)] if workers > 1 else [(data_dir, "the ")]
        for area, whose in areas:
            log = area / LOG_FOLDER
            files += [
                (log / METADATA_FILE_NAME, f"{whose}embedded log's partition count"),
                (log / START_FILE_NAME, f"{whose}embedded log's start after trimming"),
                (log / LOCK_FILE_NAME, f"{whose}embedded log's lock"),
            ]
    return files


def check_files(files: list[tuple[Path, str]]) -> None:
    """Raise LayoutError for the first of `files` that is a folder (or a symbolic link to one). Nothing is created."""
    for path, purpose in files:
        if path.is_dir():
            raise LayoutError(f"{path} is a folder, where duro keeps a file ({purpose}); move it away or use another --data-dir")
