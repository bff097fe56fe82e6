"""A service's own export store: where it spools its slice, and retention assembles the bundle.

Each service has its own store (a folder by default, or a prefix of an S3-compatible bucket);
nothing is shared between services. Keys are relative paths, `<saga id>/...`, so a whole
termination is removed with its folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.settings import ServiceSettings

SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024  # an S3 file is spooled in memory up to this, then on disk
SHA256_METADATA = "sha256"  # user metadata of an S3 object: the SHA-256 its writer computed
DELETE_BATCH = 1000  # the most keys one S3 DeleteObjects call takes
MISSING = {"404", "NoSuchKey", "NotFound"}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal records hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    with path.open("rb") as handle:
        return _sha256_of(handle)


def _sha256_of(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


class ExportStore(Protocol):
    """What a service's export store does, whatever keeps the files; every call blocks."""

    def writer(self, key: str) -> AbstractContextManager[IO[bytes]]:
        """Write a file through a seekable handle; it appears only if the block completes."""
        ...

    def reader(self, key: str) -> IO[bytes]:
        """Open a file for reading; FileNotFoundError if it is not there."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a file is there."""
        ...

    def size(self, key: str) -> int:
        """A file's size in bytes; FileNotFoundError if it is not there."""
        ...

    def sha256(self, key: str) -> str:
        """A file's hex SHA-256; FileNotFoundError if it is not there."""
        ...

    def remove(self, key: str) -> None:
        """Delete a file or a folder (everything below it); nothing there is fine."""
        ...

    def count(self, folder: str) -> int:
        """How many files a folder holds directly (0 if it does not exist)."""
        ...

    def files(self) -> list[str]:
        """The key of every file in the store, sorted (for tests and operators)."""
        ...

    def write_bytes(self, key: str, content: bytes) -> None:
        """Write a small file atomically; rewriting the same content is harmless."""
        with self.writer(key) as handle:
            handle.write(content)

    def removal(self, key: str) -> Callable[[], Awaitable[None]]:
        """An after-commit action that removes a file or folder off the event loop."""

        async def remove() -> None:
            await asyncio.to_thread(self.remove, key)

        return remove

    @asynccontextmanager
    async def async_writer(self, key: str) -> AsyncIterator[IO[bytes]]:
        """`writer` for async code: opening and completing the file (an upload) run in a thread."""
        writing = self.writer(key)
        handle = await asyncio.to_thread(writing.__enter__)
        try:
            yield handle
        except BaseException as exc:
            await asyncio.to_thread(writing.__exit__, type(exc), exc, exc.__traceback__)
            raise
        await asyncio.to_thread(writing.__exit__, None, None, None)


class FolderExportStore(ExportStore):
    """A folder tree of export files; writes are atomic, keys cannot leave the folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Resolve a key inside the store, refusing any that would leave it."""
        root = self.root.resolve()
        path = (root / key).resolve()
        if path == root or not path.is_relative_to(root):
            raise ValueError(f"export key escapes the store: {key!r}")
        return path

    @contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """Write a file; it appears under its key only once complete (a reader never sees half)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("wb") as handle:
                yield handle
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    def reader(self, key: str) -> IO[bytes]:
        """Open a file for reading; FileNotFoundError if it is not there."""
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        """Whether a file is there."""
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        """A file's size in bytes; FileNotFoundError if it is not there."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path.stat().st_size

    def sha256(self, key: str) -> str:
        """A file's hex SHA-256; FileNotFoundError if it is not there."""
        return sha256_file(self.path(key))

    def remove(self, key: str) -> None:
        """Delete a file or a folder of the store; nothing there is fine."""
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def count(self, folder: str) -> int:
        """How many files a folder holds directly (0 if it does not exist); one directory read."""
        try:
            with os.scandir(self.path(folder)) as entries:
                return sum(
                    1 for entry in entries if entry.is_file() and not entry.name.startswith(".")
                )
        except FileNotFoundError:
            return 0

    def files(self) -> list[str]:
        """The key of every file in the store, sorted (for tests and operators)."""
        if not self.root.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )


class S3ExportStore(ExportStore):
    """Export files as objects under one prefix of a bucket on an S3-compatible server.

    A file is spooled locally while written (the ZIP writer seeks back into it) and uploaded
    only when its block completes; an S3 object appears whole or not at all.
    """

    def __init__(self, *, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def object_key(self, key: str) -> str:
        """The object's name for a key, refusing any key that would leave the store's prefix."""
        normal = posixpath.normpath(key or ".")
        if normal in {".", ".."} or normal.startswith(("/", "../")):
            raise ValueError(f"export key escapes the store: {key!r}")
        return f"{self.prefix}/{normal}" if self.prefix else normal

    def _head(self, key: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.bucket, Key=self.object_key(key)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                raise FileNotFoundError(key) from exc
            raise
        return head

    def _names_under(self, prefix: str, *, directly: bool = False) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, **({"Delimiter": "/"} if directly else {})
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"]

    @contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """Write a file; it is uploaded (multipart when large) only once the block completes."""
        name = self.object_key(key)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool:
            yield spool
            spool.seek(0)
            digest = _sha256_of(spool)
            spool.seek(0)
            self.client.upload_fileobj(
                spool, self.bucket, name, ExtraArgs={"Metadata": {SHA256_METADATA: digest}}
            )

    def reader(self, key: str) -> IO[bytes]:
        """Download a file into a local seekable copy; FileNotFoundError if it is not there."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                raise FileNotFoundError(key) from exc
            raise
        # Returned open: the caller closes it, as it would a file the folder store opened.
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
        try:
            with body:
                shutil.copyfileobj(body, spool, 1 << 20)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool

    def exists(self, key: str) -> bool:
        """Whether a file is there."""
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        """A file's size in bytes; FileNotFoundError if it is not there."""
        return int(self._head(key)["ContentLength"])

    def sha256(self, key: str) -> str:
        """A file's hex SHA-256, as its writer recorded it, or read through when not recorded."""
        recorded = self._head(key).get("Metadata", {}).get(SHA256_METADATA)
        if recorded:
            return str(recorded)
        with self.reader(key) as handle:
            return _sha256_of(handle)

    def remove(self, key: str) -> None:
        """Delete a file or a folder (every object below it); nothing there is fine."""
        name = self.object_key(key)
        doomed = [name, *self._names_under(f"{name}/")]
        for start in range(0, len(doomed), DELETE_BATCH):
            batch = doomed[start : start + DELETE_BATCH]
            answer = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            if answer.get("Errors"):
                raise OSError(f"export store: {len(answer['Errors'])} objects not deleted")

    def count(self, folder: str) -> int:
        """How many files a folder holds directly (0 if it does not exist); one listing."""
        prefix = f"{self.object_key(folder)}/"
        return sum(
            1
            for name in self._names_under(prefix, directly=True)
            if not name[len(prefix) :].startswith(".")
        )

    def files(self) -> list[str]:
        """The key of every file in the store, sorted (for tests and operators)."""
        start = f"{self.prefix}/" if self.prefix else ""
        return sorted(name[len(start) :] for name in self._names_under(start))


def create_export_store(settings: ServiceSettings, service: str) -> ExportStore:
    """The service's own store: an S3 prefix when a bucket is set, otherwise a folder."""
    s3 = settings.export_store
    if s3.s3_bucket is None:
        return FolderExportStore(settings.export_store_path or Path("var/exports") / service)
    secret = s3.s3_secret_access_key
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3.s3_endpoint_url,
        region_name=s3.s3_region,
        aws_access_key_id=s3.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        # S3-compatible servers (MinIO, Ceph) name buckets in the path, not the host.
        config=Config(s3={"addressing_style": "path"}) if s3.s3_endpoint_url else None,
    )
    return S3ExportStore(
        client=client,
        bucket=s3.s3_bucket,
        prefix=service if s3.s3_prefix is None else s3.s3_prefix,
    )
