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

Only the last commit group written before a crash can be torn: the writer syncs
each group before it writes the next one and syncs a segment before it starts the
next. So on open a bad frame in the last segment within `max_torn_tail_bytes` of
its end is a torn tail and is cut off; any other bad frame is corruption and
opening fails. Functions here are blocking; the embedded log runs them in threads.
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
from dataclasses import dataclass
from pathlib import Path

from wal.log import LogError

logger = logging.getLogger(__name__)

METADATA_FILE_NAME = "duro-log.json"
LOCK_FILE_NAME = "LOCK"
FORMAT_NAME = "duro-embedded-log"
FORMAT_VERSION = 1

FRAME_HEADER = struct.Struct(">IIHQ")  # length, crc, partition, offset
FRAME_HEADER_BYTES = FRAME_HEADER.size
_CRC_FIELDS = struct.Struct(">IHQ")  # length, partition, offset: what the crc covers besides the payload

SEGMENT_POSITION_BITS = 40  # an index position is (segment number << 40) | byte position in the segment
MAX_SEGMENT_BYTES = (1 << SEGMENT_POSITION_BITS) - 1
MAX_SEGMENT_NUMBER = (1 << (64 - SEGMENT_POSITION_BITS)) - 1
_SEGMENT_NAME = re.compile(r"^segment-(\d{10})\.wal$")


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

    index: list[array[int]]  # per partition: the position of each offset (see SEGMENT_POSITION_BITS)
    last_segment_number: int
    last_segment_bytes: int
    dropped_tail_bytes: int


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


# ---------------------------------------------------------------- lock and metadata


def lock_directory(directory: Path) -> int:
    """Take the directory's exclusive lock and write our pid into it; return the lock file's descriptor.

    Raises LogError naming the holder's pid if another process (or another open
    of the same log in this process) holds it. Closing the descriptor releases it.
    """
    lock_fd = os.open(directory / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o644)
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
    metadata_path = directory / METADATA_FILE_NAME
    if not metadata_path.exists():
        _refuse_if_segments_exist(directory)
        _write_metadata(directory, partition_count)
        return
    stored = _read_metadata(metadata_path)
    if stored != partition_count:
        raise LogError(
            f"log at {directory} was created with {stored} partitions but was opened with "
            f"partition_count={partition_count}; the partition count of a log cannot change, "
            f"configure {stored} partitions or use a new directory"
        )


def _refuse_if_segments_exist(directory: Path) -> None:
    if list_segment_numbers(directory):
        raise LogCorruptError(
            f"log directory {directory} has segment files but no {METADATA_FILE_NAME}; restore the metadata file or move the segments away"
        )


def _read_metadata(metadata_path: Path) -> int:
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        format_name, version, stored = metadata["format"], metadata["format_version"], metadata["partition_count"]
    except (ValueError, KeyError, TypeError) as error:
        raise LogCorruptError(f"{metadata_path} is not a duro log metadata file: {error}") from None
    if format_name != FORMAT_NAME or version != FORMAT_VERSION:
        raise LogError(
            f"{metadata_path} describes format {format_name!r} version {version!r}; "
            f"this duro reads {FORMAT_NAME!r} version {FORMAT_VERSION}"
        )
    if not isinstance(stored, int) or stored < 1:
        raise LogCorruptError(f"{metadata_path} has an invalid partition_count {stored!r}")
    return stored


def _write_metadata(directory: Path, partition_count: int) -> None:
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "partition_count": partition_count}
    temporary_path = directory / (METADATA_FILE_NAME + ".tmp")
    with open(temporary_path, "w", encoding="utf-8") as file:
        json.dump(metadata, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary_path, directory / METADATA_FILE_NAME)
    sync_directory(directory)


def sync_directory(directory: Path) -> None:
    """fsync the directory itself, so that files created or renamed in it survive a power loss."""
    directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


# ---------------------------------------------------------------- recovery scan


def list_segment_numbers(directory: Path) -> list[int]:
    """The numbers of the segment files in `directory`, ascending; raises LogCorruptError on a gap."""
    numbers = sorted(int(match.group(1)) for name in os.listdir(directory) if (match := _SEGMENT_NAME.match(name)))
    for previous, number in itertools.pairwise(numbers):
        if number != previous + 1:
            raise LogCorruptError(f"log directory {directory} is missing segment {previous + 1} (found {previous} and {number})")
    if numbers and numbers[0] != 0:
        raise LogCorruptError(f"log directory {directory} is missing segment 0 (its first segment is {numbers[0]})")
    return numbers


def recover(directory: Path, partition_count: int, max_torn_tail_bytes: int) -> RecoveredLog:
    """Scan every segment, verify every frame, cut a torn tail off the last segment and index every entry.

    Raises LogCorruptError on a bad frame that cannot be a torn tail.
    """
    recovered = RecoveredLog(
        index=[array("Q") for _ in range(partition_count)], last_segment_number=0, last_segment_bytes=0, dropped_tail_bytes=0
    )
    numbers = list_segment_numbers(directory)
    for number in numbers:
        is_last = number == numbers[-1]
        scan = _SegmentScan(segment_path(directory, number), number, recovered.index)
        valid_bytes, file_bytes = scan.run(is_last, max_torn_tail_bytes)
        recovered.last_segment_number, recovered.last_segment_bytes = number, valid_bytes
        if valid_bytes < file_bytes:
            _cut_torn_tail(scan.path, valid_bytes, file_bytes, scan.problem)
            recovered.dropped_tail_bytes = file_bytes - valid_bytes
    return recovered


def _cut_torn_tail(path: Path, valid_bytes: int, file_bytes: int, problem: str) -> None:
    logger.warning(
        "embedded log: dropped a torn tail of %d bytes from %s at byte %d (%s); those entries were never acknowledged",
        file_bytes - valid_bytes,
        path,
        valid_bytes,
        problem,
    )
    with open(path, "r+b") as file:
        file.truncate(valid_bytes)
        file.flush()
        os.fsync(file.fileno())


class _SegmentScan:
    """Walks the frames of one segment file, appending each entry's position to the index."""

    def __init__(self, path: Path, segment_number: int, index: list[array[int]]) -> None:
        self.path = path
        self.segment_number = segment_number
        self.index = index
        self.problem = ""

    def run(self, is_last: bool, max_torn_tail_bytes: int) -> tuple[int, int]:
        """Return (bytes of valid frames, bytes in the file)."""
        with open(self.path, "rb") as file:
            file_bytes = os.fstat(file.fileno()).st_size
            if file_bytes == 0:
                return 0, 0
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                valid_bytes = self._walk(memoryview(mapped), file_bytes)
        if valid_bytes < file_bytes and not (is_last and file_bytes - valid_bytes <= max_torn_tail_bytes):
            raise LogCorruptError(
                f"log segment {self.path} is corrupt at byte {valid_bytes}: {self.problem}; "
                f"{file_bytes - valid_bytes} bytes follow it"
                + ("" if is_last else " and it is not the last segment")
                + f", which a torn write cannot leave (at most the last {max_torn_tail_bytes} bytes of the last segment). "
                "The log was damaged after it was written; restore it from a backup or repair it by hand"
            )
        return valid_bytes, file_bytes

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
        self._index_entry(position, partition, offset)
        return end - position

    def _index_entry(self, position: int, partition: int, offset: int) -> None:
        """Add a checksummed frame to the index; its partition and offset must follow the ones before."""
        if partition >= len(self.index):
            raise LogCorruptError(
                f"log segment {self.path} has an entry of partition {partition} at byte {position}, "
                f"but the log has {len(self.index)} partitions"
            )
        offsets = self.index[partition]
        if offset != len(offsets):
            raise LogCorruptError(
                f"log segment {self.path} has partition {partition} offset {offset} at byte {position}, "
                f"expected offset {len(offsets)}: entries are missing or duplicated"
            )
        offsets.append(encode_position(self.segment_number, position))


# ---------------------------------------------------------------- writing


class SegmentWriter:
    """Appends commit groups to the last segment, rolling to a new one at `max_segment_bytes`, and syncs them.

    Used by one thread at a time (the embedded log's writer thread).
    """

    def __init__(self, directory: Path, segment_number: int, segment_bytes: int, max_segment_bytes: int) -> None:
        self._directory = directory
        self._max_segment_bytes = max_segment_bytes
        self._segment_number = segment_number
        self._segment_bytes = segment_bytes
        self._fd = self._open_segment(segment_number)
        self.sync_count = 0

    def _open_segment(self, segment_number: int) -> int:
        if segment_number > MAX_SEGMENT_NUMBER:
            raise LogError(f"the log has reached its last segment number {MAX_SEGMENT_NUMBER}; it cannot grow further")
        path = segment_path(self._directory, segment_number)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if created:
            sync_directory(self._directory)
        return fd

    def commit(self, batches: Sequence[AppendBatch]) -> list[array[int]]:
        """Write every batch, in order, then sync once; return each batch's entry positions.

        An append is never split across segments; a segment is synced before the
        next one starts, so only the last segment can hold unsynced bytes.
        """
        buffer = bytearray()
        positions: list[array[int]] = []
        for batch in batches:
            if self._segment_bytes + len(buffer) > 0 and self._segment_bytes + len(buffer) + batch.framed_bytes > self._max_segment_bytes:
                self._write(buffer)
                buffer = bytearray()
                self._roll()
            positions.append(self._frame(batch, buffer, self._segment_bytes + len(buffer)))
        self._write(buffer)
        self._sync()
        return positions

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

    def _write(self, buffer: bytearray) -> None:
        view = memoryview(buffer)
        written = 0
        while written < len(view):
            written += os.write(self._fd, view[written:])
        self._segment_bytes += written
        view.release()

    def _sync(self) -> None:
        os.fdatasync(self._fd)
        self.sync_count += 1

    def _roll(self) -> None:
        self._sync()
        os.close(self._fd)
        self._segment_number += 1
        self._segment_bytes = 0
        self._fd = self._open_segment(self._segment_number)

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
