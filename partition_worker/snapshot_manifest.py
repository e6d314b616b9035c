"""What a partition snapshot is: its manifest (format, partition, applied offset, data file checksum) and the checks before it is restored.

A snapshot is two objects in a snapshot repository: `data.sst` (the
partition's RocksDB rows, keys as stored, partition prefix included) and
`manifest.json`, written last. A snapshot is whole only if its manifest exists,
parses, and names a data file of the size and SHA-256 found. Anything else is
torn (a writer died, a copy was cut short) and is skipped, never loaded.

A whole snapshot of another format, another partition count, another
partition or another log is refused: restoring it would give state that does
not belong to this log.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORMAT_NAME = "duro-partition-snapshot"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_NAME = "data.sst"


class SnapshotError(Exception):
    """A snapshot could not be written, listed or read; the message says which and why."""


class TornSnapshotError(SnapshotError):
    """A snapshot is incomplete or damaged (missing or unreadable manifest, data of the wrong size or checksum); it is skipped."""


class SnapshotRefusedError(SnapshotError):
    """A whole snapshot that must not be restored here (another format, partition count, partition or log)."""


@dataclass(frozen=True, slots=True)
class SnapshotManifest:
    """The manifest of one partition snapshot, as stored in `manifest.json`."""

    partition: int
    partition_count: int
    applied_offset: int  # the last log offset the snapshot's rows include
    leader_epoch: int
    log_name: str  # which log the offsets are of: "embedded:<log id>" or "kafka:<topic>"
    data_bytes: int
    data_sha256: str
    rows: int
    created_at_ms: int
    node_id: int
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes, where: str) -> SnapshotManifest:
        """Parse a manifest; TornSnapshotError if it is not one, SnapshotRefusedError if it is of a format this duro does not read."""
        try:
            fields: dict[str, Any] = json.loads(raw)
            format_name, version = fields["format"], fields["format_version"]
        except (ValueError, KeyError, TypeError) as error:
            raise TornSnapshotError(f"{where}: the manifest is not a duro snapshot manifest ({error!r})") from None
        if format_name != FORMAT_NAME or version != FORMAT_VERSION:
            raise SnapshotRefusedError(
                f"{where}: snapshot format {format_name!r} version {version!r}; this duro reads {FORMAT_NAME!r} version {FORMAT_VERSION}"
            )
        try:
            return SnapshotManifest(**fields)
        except TypeError as error:
            raise TornSnapshotError(f"{where}: the manifest lacks or has unknown fields ({error})") from None

    def check_restorable(self, partition: int, partition_count: int, log_name: str, where: str) -> None:
        """Raise SnapshotRefusedError unless this snapshot is of `partition` of this log with this partition count."""
        if self.partition_count != partition_count:
            raise SnapshotRefusedError(
                f"{where} is a snapshot of a log with {self.partition_count} partitions, this node runs {partition_count}: "
                "a snapshot repository belongs to one partition count; point this node at the right repository or partition count"
            )
        if self.partition != partition:
            raise SnapshotRefusedError(f"{where} holds partition {self.partition}, expected partition {partition}")
        if self.log_name != log_name:
            raise SnapshotRefusedError(
                f"{where} is a snapshot of log {self.log_name!r}, this node's log is {log_name!r}: its offsets mean nothing here; "
                "point this node at the repository of its own log"
            )

    def check_data(self, data_path: Path, where: str) -> None:
        """Raise TornSnapshotError unless the data file has the manifest's size and checksum."""
        size = data_path.stat().st_size if data_path.exists() else -1
        if size != self.data_bytes:
            raise TornSnapshotError(f"{where}: the data file has {size} bytes, the manifest says {self.data_bytes}")
        digest = file_sha256(data_path)
        if digest != self.data_sha256:
            raise TornSnapshotError(f"{where}: the data file's SHA-256 is {digest}, the manifest says {self.data_sha256}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
