"""The embedded log's directory on disk: its lock, its metadata and the segment files that hold the entries.

A log directory holds:

- `duro-log.json`: the format version and the partition count, written once when
  the log is created;
- `LOCK`: `flock`ed by the one process that has the log open, and holding its pid;
- `segment-NNNNNNNNNN.wal`: the entries of all partitions, interleaved in commit
  order, in segments numbered from 0 without gaps.

Each entry is one frame: an 18-byte big-endian header `[length u32][crc u32]
[partition u16][offset u64]` and then `length` payload bytes. The crc is
`zlib.crc32` over the length, partition, offset and payload (everything but the
crc field itself), so a torn or flipped header is caught as surely as a torn payload.

Every write that is followed by a sync (a commit group, or the part of one that
fits before a segment rolls over) ends with a commit marker (since format
version 2): a frame of the reserved partition `MARKER_PARTITION` whose offset
field is the byte where the group starts and whose payload is `MARKER_MAGIC`.

Only the last commit group written before a crash can be torn: the writer syncs
each group before it writes the next one and syncs a segment before it starts the
next. So on open a bad frame is a torn tail, and is cut off, only if it lies in
the last segment, within `max_torn_tail_bytes` of its end, and no intact marker
of a later group follows it (a later group was written only after the bad
frame's group was synced, so that group was acknowledged and is not torn). Any
other bad frame is corruption: opening fails with a message naming the segment,
the byte and the ways out, unless the caller asked to truncate a corrupt tail
(`truncate_corrupt_tail`, the operator's `--truncate-corrupt-tail`), which cuts
the log at the bad frame and logs what was dropped. Functions here are
blocking; the embedded log runs them in threads.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import logging
import mmap
import os
import re
import struct
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wal.disk_space import DISK_FULL_ERRNOS
from wal.log import LogError

SYNCED_WRITE_FLAG: int | None = getattr(os, "RWF_DSYNC", None)
"""`pwritev2`'s flag that syncs a write's data before the call returns (Linux 4.7+); None: write, then sync."""
sync_data = getattr(os, "fdatasync", os.fsync)
"""Syncs a file's data (and the metadata needed to read it) where `RWF_DSYNC` is missing; macOS has no fdatasync."""

logger = logging.getLogger(__name__)

METADATA_FILE_NAME = "duro-log.json"
FILE_MODE = 0o600  # the log holds clients' headers (Authorization, Cookie): readable by duro's user alone
START_FILE_NAME = "duro-log-start.json"  # since 0.2: where the log starts after trimming (first segment, first offset per partition)
LOCK_FILE_NAME = "LOCK"
FORMAT_NAME = "duro-embedded-log"
FORMAT_VERSION = 2  # 2: commit markers after every synced write (a version 1 log is read as it is, and upgraded on open)
READABLE_FORMAT_VERSIONS = (1, 2)

FRAME_HEADER = struct.Struct(">IIHQ")  # length, crc, partition, offset
FRAME_HEADER_BYTES = FRAME_HEADER.size
_CRC_FIELDS = struct.Struct(">IHQ")  # length, partition, offset: what the crc covers besides the payload

SEGMENT_POSITION_BITS = 40  # an index position is (segment number << 40) | byte position in the segment
MAX_SEGMENT_BYTES = (1 << SEGMENT_POSITION_BITS) - 1
MAX_SEGMENT_NUMBER = (1 << (64 - SEGMENT_POSITION_BITS)) - 1
_SEGMENT_NAME = re.compile(r"^segment-(\d{10})\.wal$")

MARKER_PARTITION = 0xFFFF  # the partition field of a commit marker; the embedded log has at most 0xFFFF partitions
MAX_EMBEDDED_PARTITION_COUNT = MARKER_PARTITION
MARKER_MAGIC = b"duroCMT\x01"  # a commit marker's payload, searched for when telling a torn tail from corruption
MARKER_BYTES = FRAME_HEADER_BYTES + len(MARKER_MAGIC)


class LogCorruptError(LogError):
    """The log's files hold data that cannot be a torn write; the log will not open or read until repaired."""


@dataclass(frozen=True, slots=True)
class AppendBatch:
    """The entries of one append, with the offset the writer assigned to the first."""

    partition: int
    first_offset: int
    entries: Sequence[bytes]
    framed_bytes: int


@dataclass(slots=True)
class RecoveredLog:
    """What scanning a log directory found: the index of every entry and where appending continues."""

    index: list[array[int]]  # per partition: the position of each offset from its start offset on (see SEGMENT_POSITION_BITS)
    last_segment_number: int
    last_segment_bytes: int
    dropped_tail_bytes: int
    truncated_corrupt_bytes: int = 0  # bytes cut off as corrupt because the caller asked to truncate a corrupt tail
    start: LogStart | None = None  # where the log starts (segment 0 and offset 0 everywhere until it is trimmed)
    segment_last_offsets: dict[int, dict[int, int]] = field(default_factory=dict)  # segment -> partition -> its last offset there


@dataclass(frozen=True, slots=True)
class LogStart:
    """Where a trimmed log starts: its first segment, and per partition the first offset still held (its end if none is)."""

    first_segment: int
    start_offsets: tuple[int, ...]

    @staticmethod
    def initial(partition_count: int) -> LogStart:
        return LogStart(0, (0,) * partition_count)


def read_log_start(directory: Path, partition_count: int) -> LogStart:
    """The log's start as last recorded by a trim; the whole log if it was never trimmed."""
    path = directory / START_FILE_NAME
    if not path.exists():
        return LogStart.initial(partition_count)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        start = LogStart(int(stored["first_segment"]), tuple(int(o) for o in stored["start_offsets"]))
    except (ValueError, KeyError, TypeError) as error:
        raise LogCorruptError(f"{path} is not a duro log start file: {error}") from None
    if len(start.start_offsets) != partition_count:
        raise LogCorruptError(f"{path} has start offsets of {len(start.start_offsets)} partitions, the log has {partition_count}")
    return start


def write_log_start(directory: Path, start: LogStart) -> None:
    """Record where the log starts, atomically and durably (before the segments below it are deleted)."""
    temporary_path = directory / (START_FILE_NAME + ".tmp")
    with open(temporary_path, "w", encoding="utf-8") as file:
        json.dump({"first_segment": start.first_segment, "start_offsets": list(start.start_offsets)}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary_path, directory / START_FILE_NAME)
    sync_directory(directory)


def delete_segments(directory: Path, numbers: Sequence[int]) -> None:
    """Delete segment files (trimmed: their start was recorded first) and sync the directory."""
    for number in numbers:
        segment_path(directory, number).unlink(missing_ok=True)
    sync_directory(directory)


def framed_bytes_of(entries: Sequence[bytes]) -> int:
    """Bytes that `entries` take on disk, headers included."""
    return sum(len(entry) for entry in entries) + FRAME_HEADER_BYTES * len(entries)


def encode_position(segment_number: int, byte_position: int) -> int:
    return (segment_number << SEGMENT_POSITION_BITS) | byte_position


def decode_position(position: int) -> tuple[int, int]:
    return position >> SEGMENT_POSITION_BITS, position & MAX_SEGMENT_BYTES


def segment_path(directory: Path, segment_number: int) -> Path:
    return directory / f"segment-{segment_number:010d}.wal"


def frame_crc(length: int, partition: int, offset: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_CRC_FIELDS.pack(length, partition, offset)))


def _marker_crc(group_start: int) -> int:
    return frame_crc(len(MARKER_MAGIC), MARKER_PARTITION, group_start, MARKER_MAGIC)


# ---------------------------------------------------------------- lock and metadata


def lock_directory(directory: Path) -> int:
    """Take the directory's exclusive lock and write our pid into it; return the lock file's descriptor.

    Raises LogError naming the holder's pid if another process (or another open
    of the same log in this process) holds it. Closing the descriptor releases it.
    """
    lock_fd = os.open(directory / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _read_lock_holder(lock_fd)
        os.close(lock_fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise LogError(
            f"log directory {directory} is in use by another duro process (pid {holder}); "
            "stop that process or point this one at another directory"
        ) from None
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
    return lock_fd


def _read_lock_holder(lock_fd: int) -> str:
    text = os.pread(lock_fd, 32, 0).decode("ascii", errors="replace").strip()
    return text or "unknown"


def load_or_create_metadata(directory: Path, partition_count: int) -> None:
    """Check the directory's metadata against `partition_count`, creating it for a new log.

    Raises LogError if the log was created with another partition count or is not
    a duro log, and LogCorruptError if the directory has segments but no metadata.
    """
    if partition_count > MAX_EMBEDDED_PARTITION_COUNT:
        raise ValueError(f"the embedded log holds at most {MAX_EMBEDDED_PARTITION_COUNT} partitions, got {partition_count}")
    metadata_path = directory / METADATA_FILE_NAME
    if not metadata_path.exists():
        _refuse_if_segments_exist(directory)
        _write_metadata(directory, partition_count)
        return
    stored, version = _read_metadata(metadata_path)
    if stored != partition_count:
        raise LogError(
            f"log at {directory} was created with {stored} partitions but was opened with "
            f"partition_count={partition_count}; the partition count of a log cannot change, "
            f"configure {stored} partitions or use a new directory"
        )
    if version != FORMAT_VERSION:
        _write_metadata(directory, partition_count)  # from here on the log gets commit markers, which version 1 readers refuse


def _refuse_if_segments_exist(directory: Path) -> None:
    if list_segment_numbers(directory):
        raise LogCorruptError(
            f"log directory {directory} has segment files but no {METADATA_FILE_NAME}; restore the metadata file or move the segments away"
        )


def _read_metadata(metadata_path: Path) -> tuple[int, int]:
    """(partition count, format version) of a log's metadata file."""
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        format_name, version, stored = metadata["format"], metadata["format_version"], metadata["partition_count"]
    except (ValueError, KeyError, TypeError) as error:
        raise LogCorruptError(f"{metadata_path} is not a duro log metadata file: {error}") from None
    if format_name != FORMAT_NAME or version not in READABLE_FORMAT_VERSIONS:
        raise LogError(
            f"{metadata_path} describes format {format_name!r} version {version!r}; "
            f"this duro reads {FORMAT_NAME!r} versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}"
        )
    if not isinstance(stored, int) or not 1 <= stored <= MAX_EMBEDDED_PARTITION_COUNT:
        raise LogCorruptError(f"{metadata_path} has an invalid partition_count {stored!r}")
    return stored, version


def _write_metadata(directory: Path, partition_count: int) -> None:
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "partition_count": partition_count}
    temporary_path = directory / (METADATA_FILE_NAME + ".tmp")
    with open(temporary_path, "w", encoding="utf-8", opener=private_opener) as file:
        json.dump(metadata, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary_path, directory / METADATA_FILE_NAME)
    sync_directory(directory)


def private_opener(path: str, flags: int) -> int:
    """An `open(opener=...)` that creates files readable and writable by duro's user alone."""
    return os.open(path, flags, FILE_MODE)


def sync_directory(directory: Path) -> None:
    """fsync the directory itself, so that files created or renamed in it survive a power loss."""
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


# ---------------------------------------------------------------- recovery scan


def list_segment_numbers(directory: Path, first_segment: int = 0) -> list[int]:
    """The numbers of the segment files in `directory` from `first_segment` on, ascending; raises LogCorruptError on a gap.

    Segments below `first_segment` were trimmed; one still there (a trim that
    stopped between recording the start and deleting) is deleted here.
    """
    numbers = sorted(int(match.group(1)) for name in os.listdir(directory) if (match := _SEGMENT_NAME.match(name)))
    trimmed = [number for number in numbers if number < first_segment]
    if trimmed:
        logger.info("embedded log at %s: deleting %d segments below %d left by an interrupted trim", directory, len(trimmed), first_segment)
        delete_segments(directory, trimmed)
        numbers = numbers[len(trimmed) :]
    for previous, number in itertools.pairwise(numbers):
        if number != previous + 1:
            raise LogCorruptError(f"log directory {directory} is missing segment {previous + 1} (found {previous} and {number})")
    if numbers and numbers[0] != first_segment:
        raise LogCorruptError(f"log directory {directory} is missing segment {first_segment} (its first segment is {numbers[0]})")
    return numbers


def recover(directory: Path, partition_count: int, max_torn_tail_bytes: int, truncate_corrupt_tail: bool = False) -> RecoveredLog:
    """Scan every segment, verify every frame, cut a torn tail off the last segment and index every entry.

    Raises LogCorruptError on a bad frame that cannot be a torn tail, unless
    `truncate_corrupt_tail`: then the log is cut at that frame (later segments
    are deleted) and the loss is logged.
    """
    start = read_log_start(directory, partition_count)
    recovered = RecoveredLog(
        index=[array("Q") for _ in range(partition_count)],
        last_segment_number=start.first_segment,
        last_segment_bytes=0,
        dropped_tail_bytes=0,
        start=start,
    )
    numbers = list_segment_numbers(directory, start.first_segment)
    for number in numbers:
        scan = _SegmentScan(segment_path(directory, number), number, recovered.index, start.start_offsets)
        is_last = number == numbers[-1]
        lengths_before = [len(offsets) for offsets in recovered.index]
        damage = scan.run(is_last, max_torn_tail_bytes)
        recovered.segment_last_offsets[number] = {
            partition: start.start_offsets[partition] + len(offsets) - 1
            for partition, offsets in enumerate(recovered.index)
            if len(offsets) > lengths_before[partition]
        }
        recovered.last_segment_number, recovered.last_segment_bytes = number, damage.valid_bytes
        if damage.valid_bytes == damage.file_bytes:
            continue
        if damage.torn:
            _cut_torn_tail(scan.path, damage)
            recovered.dropped_tail_bytes = damage.file_bytes - damage.valid_bytes
            continue
        later = numbers[numbers.index(number) + 1 :]
        if not truncate_corrupt_tail:
            raise LogCorruptError(_corruption_message(directory, scan.path, damage, later))
        recovered.truncated_corrupt_bytes = _truncate_corrupt_tail(directory, scan.path, damage, later)
        break
    return recovered


@dataclass(frozen=True, slots=True)
class _SegmentDamage:
    """Where the scan of one segment stopped, and whether what follows may be a torn write."""

    valid_bytes: int
    file_bytes: int
    problem: str = ""
    torn: bool = False
    later_group_at: int | None = None  # where an intact marker of a later commit group starts, if one follows the bad frame


def _corruption_message(directory: Path, path: Path, damage: _SegmentDamage, later_segments: list[int]) -> str:
    if later_segments:
        why = f"it is not the last segment ({len(later_segments)} segments follow it)"
    elif damage.later_group_at is not None:
        why = f"a later commit group, synced after this one, follows at byte {damage.later_group_at}"
    else:
        why = f"{damage.file_bytes - damage.valid_bytes} bytes follow it, more than the last commit group can hold"
    return (
        f"log segment {path} is corrupt at byte {damage.valid_bytes}: {damage.problem}. This is not a torn write, because "
        f"{why}: data that was synced (and acknowledged) was damaged afterwards. duro will not start on it. Ways out: "
        f"restore the data dir {directory.parent} from a snapshot or a backup, or rebuild this node from a replica; or, "
        f"accepting the loss of every entry from this point on, start once with --truncate-corrupt-tail (it cuts the log "
        f"at byte {damage.valid_bytes} of {path.name}, deletes any later segment and logs what was dropped)"
    )


def _truncate_corrupt_tail(directory: Path, path: Path, damage: _SegmentDamage, later_segments: list[int]) -> int:
    """Cut `path` at the bad frame and delete every later segment; return the bytes dropped."""
    later_bytes = sum(segment_path(directory, number).stat().st_size for number in later_segments)
    dropped = damage.file_bytes - damage.valid_bytes + later_bytes
    logger.error(
        "embedded log: --truncate-corrupt-tail: cutting %s at byte %d (%s) and deleting %d later segments: "
        "%d bytes of entries are dropped, acknowledged ones among them",
        path, damage.valid_bytes, damage.problem, len(later_segments), dropped,
    )  # fmt: skip
    for number in reversed(later_segments):
        segment_path(directory, number).unlink()
    _truncate(path, damage.valid_bytes)
    sync_directory(directory)
    return dropped


def _cut_torn_tail(path: Path, damage: _SegmentDamage) -> None:
    logger.warning(
        "embedded log: dropped a torn tail of %d bytes from %s at byte %d (%s); those entries were never acknowledged",
        damage.file_bytes - damage.valid_bytes,
        path,
        damage.valid_bytes,
        damage.problem,
    )
    _truncate(path, damage.valid_bytes)


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)
        file.flush()
        os.fsync(file.fileno())


class _SegmentScan:
    """Walks the frames of one segment file, appending each entry's position to the index."""

    def __init__(self, path: Path, segment_number: int, index: list[array[int]], start_offsets: Sequence[int]) -> None:
        self.path = path
        self.segment_number = segment_number
        self.index = index
        self.start_offsets = start_offsets
        self.problem = ""
        self.structural = False  # the bad frame's checksum matched: no torn write leaves it

    def run(self, is_last: bool, max_torn_tail_bytes: int) -> _SegmentDamage:
        """Index the segment's frames up to the first bad one and say whether the rest may be a torn write."""
        with open(self.path, "rb") as file:
            file_bytes = os.fstat(file.fileno()).st_size
            if file_bytes == 0:
                return _SegmentDamage(0, 0)
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                valid_bytes = self._walk(memoryview(mapped), file_bytes)
                if valid_bytes == file_bytes:
                    return _SegmentDamage(valid_bytes, file_bytes)
                later_group_at = _later_group_marker(mapped, valid_bytes)
        torn = is_last and not self.structural and later_group_at is None and file_bytes - valid_bytes <= max_torn_tail_bytes + MARKER_BYTES
        return _SegmentDamage(valid_bytes, file_bytes, self.problem, torn, later_group_at)

    def _walk(self, view: memoryview, file_bytes: int) -> int:
        """Index frames from the start until the end or the first bad frame; return where that stopped."""
        try:
            position = 0
            while position < file_bytes:
                frame_bytes = self._check_frame(view, position, file_bytes)
                if frame_bytes == 0:
                    return position
                position += frame_bytes
            return position
        finally:
            view.release()

    def _check_frame(self, view: memoryview, position: int, file_bytes: int) -> int:
        """Index the frame at `position` and return its size, or set `problem` and return 0 if it is bad."""
        if file_bytes - position < FRAME_HEADER_BYTES:
            self.problem = f"a frame header cut short ({file_bytes - position} of {FRAME_HEADER_BYTES} bytes)"
            return 0
        length: int
        crc: int
        partition: int
        offset: int
        length, crc, partition, offset = FRAME_HEADER.unpack_from(view, position)
        end: int = position + FRAME_HEADER_BYTES + length
        if end > file_bytes:
            self.problem = f"a frame of {length} payload bytes cut short at the end of the file"
            return 0
        if frame_crc(length, partition, offset, view[position + FRAME_HEADER_BYTES : end]) != crc:
            self.problem = "a frame whose checksum does not match"
            return 0
        if partition == MARKER_PARTITION:
            return end - position  # a commit marker: nothing to index
        if not self._index_entry(position, partition, offset):
            self.structural = True
            return 0
        return end - position

    def _index_entry(self, position: int, partition: int, offset: int) -> bool:
        """Add a checksummed frame to the index; False (with `problem` set) unless its partition and offset follow the ones before."""
        if partition >= len(self.index):
            self.problem = f"an entry of partition {partition}, but the log has {len(self.index)} partitions"
            return False
        offsets = self.index[partition]
        expected = self.start_offsets[partition] + len(offsets)
        if offset != expected:
            self.problem = f"partition {partition} offset {offset} where offset {expected} was expected: entries are missing or duplicated"
            return False
        offsets.append(encode_position(self.segment_number, position))
        return True


def _later_group_marker(mapped: mmap.mmap, bad_position: int) -> int | None:
    """Where the first intact commit marker of a group that starts after `bad_position` begins, if the segment has one."""
    search_from = bad_position
    while (found := mapped.find(MARKER_MAGIC, search_from)) != -1:
        search_from = found + 1
        start = found - FRAME_HEADER_BYTES
        if start < bad_position:
            continue
        length, crc, partition, group_start = FRAME_HEADER.unpack_from(mapped, start)
        if length != len(MARKER_MAGIC) or partition != MARKER_PARTITION or group_start <= bad_position:
            continue
        if _marker_crc(group_start) == crc:
            return start
    return None


# ---------------------------------------------------------------- writing


class SegmentWriter:
    """Appends commit groups to the last segment, rolling to a new one at `max_segment_bytes`, and syncs them.

    Used by one thread at a time (the embedded log's writer thread).
    """

    @property
    def segment_number(self) -> int:
        """The segment being written (read from other threads: it only grows)."""
        return self._segment_number

    def __init__(self, directory: Path, segment_number: int, segment_bytes: int, max_segment_bytes: int) -> None:
        self._directory = directory
        self._max_segment_bytes = max_segment_bytes
        self._segment_number = segment_number
        self._segment_bytes = segment_bytes
        self._synced_bytes = segment_bytes  # what a failed write or sync is cut back to
        self._fd = self._open_segment(segment_number)
        self.sync_count = 0

    def _open_segment(self, segment_number: int) -> int:
        if segment_number > MAX_SEGMENT_NUMBER:
            raise LogError(f"the log has reached its last segment number {MAX_SEGMENT_NUMBER}; it cannot grow further")
        path = segment_path(self._directory, segment_number)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        if created:
            sync_directory(self._directory)
        return fd

    def commit(self, batches: Sequence[AppendBatch]) -> tuple[list[array[int]], OSError | None]:
        """Write every batch, in order, then sync once; return the entry positions of each batch that is durable.

        An append is never split across segments; a segment is synced before the
        next one starts, so only the last segment can hold unsynced bytes. When
        the disk is full (ENOSPC, EDQUOT) the unsynced bytes are cut off again
        and the error is returned with the positions of the batches synced
        before it (a prefix); the writer stays usable. Any other OSError is raised.
        """
        buffer = bytearray()
        positions: list[array[int]] = []
        durable = 0
        try:
            for batch in batches:
                if (
                    self._segment_bytes + len(buffer) > 0
                    and self._segment_bytes + len(buffer) + batch.framed_bytes + MARKER_BYTES > self._max_segment_bytes
                ):
                    self._write_group(buffer)
                    durable = len(positions)
                    buffer = bytearray()
                    self._roll()
                positions.append(self._frame(batch, buffer, self._segment_bytes + len(buffer)))
            self._write_group(buffer)
            return positions, None
        except OSError as error:
            if error.errno not in DISK_FULL_ERRNOS:
                raise
            self._cut_unsynced()
            return positions[:durable], error

    def _cut_unsynced(self) -> None:
        """After a write or sync that failed for want of space: drop what was written since the last sync."""
        os.ftruncate(self._fd, self._synced_bytes)
        self._segment_bytes = self._synced_bytes

    def _write_group(self, buffer: bytearray) -> None:
        """Write and sync the frames of one group and the commit marker that says where it starts.

        One `pwritev2` with `RWF_DSYNC` does both (the same durability as a
        write followed by `fdatasync`): the writer thread makes one system call
        per group, so it gives up and takes back the interpreter lock once
        instead of twice, and the event loop's thread waits for it less.
        Where the platform has no `RWF_DSYNC` (not Linux), it writes, then syncs.
        An empty buffer has nothing unsynced behind it (every group is synced
        before the next is written), so it is neither written nor synced.
        """
        if not buffer:
            return
        group_start = self._segment_bytes
        buffer += FRAME_HEADER.pack(len(MARKER_MAGIC), _marker_crc(group_start), MARKER_PARTITION, group_start)
        buffer += MARKER_MAGIC
        with memoryview(buffer) as view:
            written = 0
            while written < len(view):  # with RWF_DSYNC each part written is synced before the call returns
                if SYNCED_WRITE_FLAG is None:
                    written += os.pwrite(self._fd, view[written:], self._segment_bytes + written)
                else:
                    written += os.pwritev(self._fd, [view[written:]], self._segment_bytes + written, SYNCED_WRITE_FLAG)
        if SYNCED_WRITE_FLAG is None:
            sync_data(self._fd)
        self._segment_bytes += written
        self._synced_bytes = self._segment_bytes
        self.sync_count += 1

    def _frame(self, batch: AppendBatch, buffer: bytearray, start: int) -> array[int]:
        positions = array("Q")
        position = start
        base = encode_position(self._segment_number, 0)
        partition = batch.partition
        for offset, payload in enumerate(batch.entries, batch.first_offset):
            length = len(payload)
            buffer += FRAME_HEADER.pack(length, frame_crc(length, partition, offset, payload), partition, offset)
            buffer += payload
            positions.append(base | position)
            position += FRAME_HEADER_BYTES + length
        return positions

    def _roll(self) -> None:
        """Continue in a new segment (the current one was synced); if it cannot be created, stay in the current one."""
        fd = self._open_segment(self._segment_number + 1)
        os.close(self._fd)
        self._fd = fd
        self._segment_number += 1
        self._segment_bytes = self._synced_bytes = 0

    def close(self) -> None:
        os.close(self._fd)


# ---------------------------------------------------------------- reading


def read_entries(
    directory: Path, partition: int, first_offset: int, positions: array[int], max_read_batch_bytes: int
) -> list[tuple[int, bytes]]:
    """Read the entries of `partition` at `positions` (offsets from `first_offset` on), verifying each frame.

    Stops early, after at least one entry, once `max_read_batch_bytes` were read.
    Entries of one segment that lie close together are read with one pread.
    """
    entries: list[tuple[int, bytes]] = []
    read_bytes = 0
    descriptors: dict[int, int] = {}
    try:
        while len(entries) < len(positions) and read_bytes < max_read_batch_bytes:
            run_end = _run_end(positions, len(entries), max_read_batch_bytes - read_bytes)
            read_bytes += _read_run(directory, descriptors, partition, first_offset, positions, len(entries), run_end, entries)
    finally:
        for fd in descriptors.values():
            os.close(fd)
    return entries


def _run_end(positions: array[int], start: int, max_span_bytes: int) -> int:
    """The end (exclusive) of the longest run from `start` in one segment whose starts span at most `max_span_bytes`."""
    segment_number, first_byte = decode_position(positions[start])
    end = start + 1
    while end < len(positions):
        number, byte_position = decode_position(positions[end])
        if number != segment_number or byte_position - first_byte > max_span_bytes:
            break
        end += 1
    return end


def _read_run(
    directory: Path,
    descriptors: dict[int, int],
    partition: int,
    first_offset: int,
    positions: array[int],
    start: int,
    end: int,
    entries: list[tuple[int, bytes]],
) -> int:
    """Read entries start..end-1 (all in one segment) into `entries`; return the bytes read."""
    segment_number, first_byte = decode_position(positions[start])
    fd = descriptors.get(segment_number)
    if fd is None:
        fd = descriptors[segment_number] = os.open(segment_path(directory, segment_number), os.O_RDONLY)
    _, last_byte = decode_position(positions[end - 1])
    last_header = _pread_exactly(fd, FRAME_HEADER_BYTES, last_byte, directory, segment_number)
    last_length: int = FRAME_HEADER.unpack(last_header)[0]
    span = last_byte - first_byte + FRAME_HEADER_BYTES + last_length
    data = memoryview(_pread_exactly(fd, span, first_byte, directory, segment_number))
    for index in range(start, end):
        offset = first_offset + index
        relative = decode_position(positions[index])[1] - first_byte
        entries.append((offset, _verified_payload(data, relative, partition, offset, segment_number)))
    return span


def _pread_exactly(fd: int, size: int, position: int, directory: Path, segment_number: int) -> bytes:
    data = os.pread(fd, size, position)
    if len(data) != size:
        raise LogCorruptError(
            f"log segment {segment_path(directory, segment_number)} ends at byte {position + len(data)}, "
            f"before the entry its index expects at {position}; the file was truncated while the log was open"
        )
    return data


def _verified_payload(data: memoryview, relative: int, partition: int, offset: int, segment_number: int) -> bytes:
    length, crc, stored_partition, stored_offset = FRAME_HEADER.unpack_from(data, relative)
    payload = data[relative + FRAME_HEADER_BYTES : relative + FRAME_HEADER_BYTES + length]
    if (stored_partition, stored_offset) != (partition, offset) or frame_crc(length, partition, offset, payload) != crc:
        raise LogCorruptError(
            f"log segment {segment_number} holds a damaged frame where partition {partition} offset {offset} "
            f"should be (found partition {stored_partition} offset {stored_offset}); the file changed after it was written"
        )
    return bytes(payload)
