"""Small real filesystems for fault tests: a tmpfs of a few MiB (a disk that fills) and ext4 on a loop device (a disk that fails).

Both need root and a kernel that lets this process mount; `unavailable_reason`
says why not, so tests can skip with that reason. Every mount is undone on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

COMMAND_TIMEOUT_S = 60


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "mounting a test filesystem needs root"
    for tool in ("mount", "umount", "losetup", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        raise OSError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def tmpfs(mount_point: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of `size_mib` MiB mounted at `mount_point` (created), unmounted on exit."""
    mount_point.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mount_point))
    try:
        yield mount_point
    finally:
        _run("umount", "-l", str(mount_point))


class LoopExt4:
    """ext4 in an image file on a loop device, mounted with errors=remount-ro; `fail()` injects a filesystem error."""

    def __init__(self, image: Path, mount_point: Path) -> None:
        self.image = image
        self.mount_point = mount_point
        self.device = ""

    def fail(self) -> None:
        """What ext4 does on a real I/O error: report it and remount read-only, so every later write fails (EROFS)."""
        Path(f"/sys/fs/ext4/{Path(self.device).name}/trigger_fs_error").write_text("duro fault test\n")


@contextlib.contextmanager
def loop_ext4(directory: Path, size_mib: int) -> Iterator[LoopExt4]:
    """A fresh ext4 filesystem of `size_mib` MiB mounted under `directory`; detached on exit."""
    image = directory / f"ext4-{uuid.uuid4().hex[:8]}.img"
    with open(image, "wb") as file:
        file.truncate(size_mib * 1024 * 1024)
    _run("mkfs.ext4", "-q", "-F", str(image))
    disk = LoopExt4(image, directory / "mnt")
    disk.mount_point.mkdir(parents=True, exist_ok=True)
    _run("mount", "-o", "loop,errors=remount-ro", str(image), str(disk.mount_point))
    try:
        disk.device = _run("findmnt", "-n", "-o", "SOURCE", str(disk.mount_point))
        yield disk
    finally:
        _run("umount", "-l", str(disk.mount_point))
        image.unlink(missing_ok=True)
