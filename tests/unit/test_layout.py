"""The data dir's layout check: every folder duro creates is a folder or absent, every file it keeps is not a folder, or start-up says what is in the way."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from duro.layout import LayoutError, check_files, check_folders, expected_files, expected_folders


def folders_of(data_dir: Path, workers: int = 1, embedded_log: bool = True, local_snapshots: bool = True) -> list[Path]:
    return [path for path, _ in expected_folders(data_dir, workers, 2, embedded_log, local_snapshots)]


def test_one_process_folders_sit_in_the_data_dir_and_parents_come_first(tmp_path: Path) -> None:
    folders = folders_of(tmp_path)
    relative = [str(path.relative_to(tmp_path)) for path in folders]
    assert relative == [
        ".", "log", "state", "snapshots", "snapshots/partition-00000", "snapshots/partition-00001",
        "snapshot-scratch", "snapshot-scratch/export",
    ]  # fmt: skip


def test_workers_keep_their_folders_under_workers_and_kafka_has_no_log_folder(tmp_path: Path) -> None:
    relative = {str(path.relative_to(tmp_path)) for path in folders_of(tmp_path, workers=2, embedded_log=False, local_snapshots=False)}
    assert {"workers", "workers/0", "workers/1", "workers/1/state", "workers/1/snapshot-scratch/export"} <= relative
    assert not any(name.endswith("log") or "snapshots" in name for name in relative)
    assert "state" not in relative  # a node of several workers keeps no state of its own


def test_an_empty_or_missing_or_whole_data_dir_passes(tmp_path: Path) -> None:
    check_folders(expected_folders(tmp_path / "new", 2, 2, True, True))
    for path in folders_of(tmp_path):
        path.mkdir(exist_ok=True)
    check_folders(expected_folders(tmp_path, 1, 2, True, True))


def test_a_symbolic_link_to_a_folder_counts_as_the_folder(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "state").symlink_to(tmp_path / "elsewhere")
    check_folders(expected_folders(tmp_path / "data", 1, 2, True, True))


@pytest.mark.parametrize(
    ("inside", "found", "purpose"),
    [
        ("log", "a file", "the embedded log"),
        ("state", "a file", "the state store (RocksDB)"),
        ("snapshots/partition-00001", "a file", "the snapshots of partition 1"),
        ("snapshot-scratch", "a named pipe", "the snapshot scratch space"),
        ("snapshot-scratch/export", "a symbolic link to nothing", "the snapshot exports"),
    ],
)
def test_something_else_in_a_folders_place_is_named_with_what_was_expected(tmp_path: Path, inside: str, found: str, purpose: str) -> None:
    data = tmp_path / "data"
    path = data / inside
    path.parent.mkdir(parents=True)
    if found == "a named pipe":
        os.mkfifo(path)
    elif found == "a symbolic link to nothing":
        path.symlink_to(tmp_path / "gone")
    else:
        path.write_text("not a folder")
    with pytest.raises(LayoutError) as raised:
        check_folders(expected_folders(data, 1, 2, True, True))
    assert str(raised.value) == f"{path} is {found}, where duro keeps a folder ({purpose}); move it away or use another --data-dir"


def test_a_file_as_the_data_dir_or_above_it_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("")
    with pytest.raises(LayoutError, match=f"^{data} is a file, where duro keeps a folder \\(the data dir\\)"):
        check_folders(expected_folders(data, 1, 2, True, True))
    with pytest.raises(LayoutError, match=f"^{data} is a file, where duro keeps a folder \\(a parent folder of the data dir\\)"):
        check_folders(expected_folders(data / "below", 1, 2, True, True))


def test_a_socket_in_a_workers_place_is_named(tmp_path: Path) -> None:
    (tmp_path / "workers").mkdir()
    path = tmp_path / "workers" / "1"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        with pytest.raises(LayoutError, match="is a socket, where duro keeps a folder \\(worker 1's log, state and snapshots\\)"):
            check_folders(expected_folders(tmp_path, 2, 2, True, True))


def test_a_folder_where_a_file_goes_is_named_with_what_was_expected(tmp_path: Path) -> None:
    files = expected_files(tmp_path, workers=2, embedded_log=True)
    assert (tmp_path / "workers" / "1" / "log" / "duro-log-start.json", "worker 1's embedded log's start after trimming") in files
    assert not any("log" in path.parts for path, _ in expected_files(tmp_path, workers=1, embedded_log=False))
    check_files(files)  # nothing there yet: fine
    (tmp_path / "subscriptions.json").write_text("{}")
    check_files(files)  # a file where a file goes: fine
    (tmp_path / "workers" / "1" / "log" / "duro-log-start.json").mkdir(parents=True)
    with pytest.raises(LayoutError) as raised:
        check_files(files)
    assert str(raised.value) == (
        f"{tmp_path}/workers/1/log/duro-log-start.json is a folder, where duro keeps a file"
        " (worker 1's embedded log's start after trimming); move it away or use another --data-dir"
    )
