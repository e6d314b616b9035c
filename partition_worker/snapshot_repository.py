"""Where partition snapshots are kept: a directory (the default, under the data dir) or an S3-compatible bucket.

Both lay a snapshot out as `partition-PPPPP/OOOOOOOOOOOOOOOOOOOO/` (partition
and applied offset, zero-padded so names sort by number) holding `data.sst`
and, written last, `manifest.json`. A snapshot without its manifest is torn:
never listed as whole, and removed by `discard_torn`.

The directory repository writes into a temporary directory, syncs both files,
then renames it into place and syncs the parent, so a crash leaves either a
whole snapshot or a `.tmp-` directory. The S3 repository uploads the data,
then the manifest (boto3, in a worker thread; an S3 PUT is atomic per object).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Protocol

from partition_worker.settings import SnapshotSettings
from partition_worker.snapshot_manifest import DATA_NAME, MANIFEST_NAME, SnapshotError, SnapshotManifest, TornSnapshotError
from wal.embedded_files import sync_directory

log = logging.getLogger("duro.snapshots")

_OFFSET_NAME = re.compile(r"^\d{20}$")
_TEMPORARY_PREFIX = ".tmp-"


def partition_folder(partition: int) -> str:
    return f"partition-{partition:05d}"


def offset_folder(applied_offset: int) -> str:
    return f"{applied_offset:020d}"


class SnapshotRepository(Protocol):
    """A store of partition snapshots shared by the nodes that may run a partition."""

    @property
    def description(self) -> str:
        """Where the snapshots are, for messages."""
        ...

    async def put(self, manifest: SnapshotManifest, data_path: Path) -> None:
        """Store a snapshot: its data, then its manifest. Returns once both are durable."""
        ...

    async def offsets(self, partition: int) -> list[int]:
        """Applied offsets of the partition's snapshots that have a manifest, ascending."""
        ...

    async def fetch(self, partition: int, applied_offset: int, scratch: Path) -> tuple[SnapshotManifest, Path]:
        """The manifest and a local path of the data file (downloaded into `scratch` if need be), data checked against the manifest.

        Raises TornSnapshotError if the snapshot is incomplete or damaged, SnapshotRefusedError if of an unknown format.
        """
        ...

    async def delete(self, partition: int, applied_offset: int) -> None:
        """Remove one snapshot (manifest first, so that it is never half there yet listed)."""
        ...

    async def discard_torn(self, partition: int) -> int:
        """Remove what writers that died left of this partition's snapshots; return how many were removed."""
        ...


class DirectorySnapshotRepository:
    """Snapshots in a local directory (one node's, e.g. `DATA_DIR/snapshots`, or a shared mount)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return f"directory {self.root}"

    def _snapshot_dir(self, partition: int, applied_offset: int) -> Path:
        return self.root / partition_folder(partition) / offset_folder(applied_offset)

    async def put(self, manifest: SnapshotManifest, data_path: Path) -> None:
        await asyncio.to_thread(self._put, manifest, data_path)

    def _put(self, manifest: SnapshotManifest, data_path: Path) -> None:
        parent = self.root / partition_folder(manifest.partition)
        parent.mkdir(parents=True, exist_ok=True)
        final = parent / offset_folder(manifest.applied_offset)
        if final.exists():
            return  # a snapshot at this offset is already whole here
        temporary = parent / f"{_TEMPORARY_PREFIX}{offset_folder(manifest.applied_offset)}-{secrets.token_hex(4)}"
        temporary.mkdir()
        shutil.copyfile(data_path, temporary / DATA_NAME)
        _sync_file(temporary / DATA_NAME)
        (temporary / MANIFEST_NAME).write_bytes(manifest.to_json())
        _sync_file(temporary / MANIFEST_NAME)
        sync_directory(temporary)
        os.rename(temporary, final)
        sync_directory(parent)

    async def offsets(self, partition: int) -> list[int]:
        return await asyncio.to_thread(self._offsets, partition)

    def _offsets(self, partition: int) -> list[int]:
        parent = self.root / partition_folder(partition)
        if not parent.is_dir():
            return []
        return sorted(int(name) for name in os.listdir(parent) if _OFFSET_NAME.match(name) and (parent / name / MANIFEST_NAME).exists())

    async def fetch(self, partition: int, applied_offset: int, scratch: Path) -> tuple[SnapshotManifest, Path]:
        return await asyncio.to_thread(self._fetch, partition, applied_offset)

    def _fetch(self, partition: int, applied_offset: int) -> tuple[SnapshotManifest, Path]:
        folder = self._snapshot_dir(partition, applied_offset)
        where = f"snapshot {folder}"
        try:
            raw = (folder / MANIFEST_NAME).read_bytes()
        except OSError as error:
            raise TornSnapshotError(f"{where}: no readable manifest ({error})") from None
        manifest = SnapshotManifest.from_json(raw, where)
        manifest.check_data(folder / DATA_NAME, where)
        return manifest, folder / DATA_NAME

    async def delete(self, partition: int, applied_offset: int) -> None:
        await asyncio.to_thread(self._delete, self._snapshot_dir(partition, applied_offset))

    def _delete(self, folder: Path) -> None:
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)

    async def discard_torn(self, partition: int) -> int:
        return await asyncio.to_thread(self._discard_torn, partition)

    def _discard_torn(self, partition: int) -> int:
        parent = self.root / partition_folder(partition)
        if not parent.is_dir():
            return 0
        torn = [
            parent / name
            for name in os.listdir(parent)
            if name.startswith(_TEMPORARY_PREFIX) or (_OFFSET_NAME.match(name) and not (parent / name / MANIFEST_NAME).exists())
        ]
        for folder in torn:
            log.warning("snapshot repository %s: removing the torn snapshot %s (its writer stopped before it was whole)", self.root, folder)
            shutil.rmtree(folder, ignore_errors=True)
        return len(torn)


class S3SnapshotRepository:
    """Snapshots in an S3-compatible bucket under a key prefix, through boto3 (each call in a worker thread)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    @property
    def description(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, partition: int, applied_offset: int, name: str) -> str:
        return f"{self.prefix}{partition_folder(partition)}/{offset_folder(applied_offset)}/{name}"

    async def put(self, manifest: SnapshotManifest, data_path: Path) -> None:
        await asyncio.to_thread(self._put, manifest, data_path)

    def _put(self, manifest: SnapshotManifest, data_path: Path) -> None:
        partition, offset = manifest.partition, manifest.applied_offset
        self._call("upload", self._client.upload_file, str(data_path), self.bucket, self._key(partition, offset, DATA_NAME))
        self._call(
            "upload", self._client.put_object, Bucket=self.bucket, Key=self._key(partition, offset, MANIFEST_NAME), Body=manifest.to_json()
        )

    def _listing(self, partition: int) -> dict[int, set[str]]:
        """Offset -> names of the objects under it, for one partition."""
        found: dict[int, set[str]] = {}
        folder = f"{self.prefix}{partition_folder(partition)}/"
        paginator = self._client.get_paginator("list_objects_v2")
        for page in self._call("list", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=folder))):
            for item in page.get("Contents", ()):
                offset_text, _, name = item["Key"][len(folder) :].partition("/")
                if _OFFSET_NAME.match(offset_text):
                    found.setdefault(int(offset_text), set()).add(name)
        return found

    async def offsets(self, partition: int) -> list[int]:
        listing = await asyncio.to_thread(self._listing, partition)
        return sorted(offset for offset, names in listing.items() if MANIFEST_NAME in names)

    async def fetch(self, partition: int, applied_offset: int, scratch: Path) -> tuple[SnapshotManifest, Path]:
        return await asyncio.to_thread(self._fetch, partition, applied_offset, scratch)

    def _fetch(self, partition: int, applied_offset: int, scratch: Path) -> tuple[SnapshotManifest, Path]:
        where = f"snapshot {self.description}{partition_folder(partition)}/{offset_folder(applied_offset)}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(partition, applied_offset, MANIFEST_NAME))
            raw = response["Body"].read()
        except Exception as error:  # botocore raises many types; a missing manifest is a torn snapshot
            raise TornSnapshotError(f"{where}: no readable manifest ({error})") from None
        manifest = SnapshotManifest.from_json(raw, where)
        scratch.mkdir(parents=True, exist_ok=True)
        data_path = scratch / DATA_NAME
        try:
            self._client.download_file(self.bucket, self._key(partition, applied_offset, DATA_NAME), str(data_path))
        except Exception as error:
            raise TornSnapshotError(f"{where}: the data file cannot be read ({error})") from None
        manifest.check_data(data_path, where)
        return manifest, data_path

    async def delete(self, partition: int, applied_offset: int) -> None:
        await asyncio.to_thread(self._delete_offset, partition, applied_offset, [MANIFEST_NAME, DATA_NAME])

    def _delete_offset(self, partition: int, applied_offset: int, names: list[str]) -> None:
        for name in names:  # the manifest first: a snapshot is never listed while its data is going
            self._call("delete", self._client.delete_object, Bucket=self.bucket, Key=self._key(partition, applied_offset, name))

    async def discard_torn(self, partition: int) -> int:
        listing = await asyncio.to_thread(self._listing, partition)
        torn = [offset for offset, names in listing.items() if MANIFEST_NAME not in names]
        for offset in torn:
            log.warning("snapshot repository %s: removing the torn snapshot of partition %d at %d", self.description, partition, offset)
            await asyncio.to_thread(self._delete_offset, partition, offset, sorted(listing[offset]))
        return len(torn)

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise SnapshotError(f"snapshot repository {self.description}: {what} failed: {error}") from error


def _sync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def open_repository(settings: SnapshotSettings, default_directory: Path) -> SnapshotRepository:
    """The repository `settings.repository` names: s3://BUCKET/PREFIX, a directory (file:// optional), or `default_directory`."""
    location = settings.repository
    if location is None:
        return DirectorySnapshotRepository(default_directory)
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket:
            raise SnapshotError(f"snapshot repository {location!r} names no bucket; expected s3://BUCKET/PREFIX")
        return S3SnapshotRepository(_s3_client(settings), bucket, prefix)
    if "://" in location and not location.startswith("file://"):
        raise SnapshotError(f"snapshot repository {location!r}: expected a directory, file://PATH or s3://BUCKET/PREFIX")
    return DirectorySnapshotRepository(Path(location.removeprefix("file://")))


def _s3_client(settings: SnapshotSettings) -> Any:
    """A boto3 S3 client; credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, profiles, roles)."""
    import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints; the client is used as Any
    from botocore.config import Config  # type: ignore[import-untyped]  # likewise

    config = Config(s3={"addressing_style": settings.s3_addressing_style}, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config)
