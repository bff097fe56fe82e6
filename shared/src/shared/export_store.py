"""A service's own export store: where it spools its slice, and retention assembles the bundle.

Each service has its own store (a folder by default); nothing is shared between services. Keys
are relative paths, `<saga id>/...`, so a whole termination is removed with its folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal records hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ExportStore:
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

    def write_bytes(self, key: str, content: bytes) -> None:
        """Write a small file atomically; rewriting the same content is harmless."""
        with self.writer(key) as handle:
            handle.write(content)

    def reader(self, key: str) -> IO[bytes]:
        """Open a file for reading; FileNotFoundError if it is not there."""
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        """Whether a file is there."""
        return self.path(key).is_file()

    def remove(self, key: str) -> None:
        """Delete a file or a folder of the store; nothing there is fine."""
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def removal(self, key: str) -> Callable[[], Awaitable[None]]:
        """An after-commit action that removes a file or folder off the event loop."""

        async def remove() -> None:
            await asyncio.to_thread(self.remove, key)

        return remove

    def count(self, folder: str) -> int:
        """How many files a folder holds directly (0 if it does not exist); one directory read."""
        try:
            with os.scandir(self.path(folder)) as entries:
                return sum(
                    1 for entry in entries if entry.is_file() and not entry.name.startswith(".")
                )
        except FileNotFoundError:
            return 0

    def files(self) -> list[Path]:
        """Every file in the store (for tests and operators)."""
        return sorted(p for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else []
