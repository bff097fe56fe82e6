"""The export store: where services write their slices of an account and retention the bundle."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shared.contracts import ExportFile


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
    """A folder tree: `<export_key>/<service>/<record_type>.jsonl` and `<export_key>/<bundle>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """Resolve a key inside the store, refusing any that would leave it."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"export key escapes the store: {key!r}")
        return path

    def write_slice(
        self, *, export_key: str, service: str, record_type: str, records: Iterable[dict[str, Any]]
    ) -> ExportFile:
        """Write one record type of a service's slice as JSON Lines; rewriting is harmless."""
        folder = self.path(f"{export_key}/{service}")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{record_type}.jsonl"
        partial = folder / f".{name}.partial"
        count = 0
        with partial.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(canonical_json(record) + "\n")
                count += 1
        partial.replace(folder / name)  # atomic: a reader never sees half a file
        return ExportFile(
            name=name, record_type=record_type, records=count, sha256=sha256_file(folder / name)
        )

    def read_slice(self, *, export_key: str, service: str, name: str) -> list[dict[str, Any]]:
        """Read back a slice file's records."""
        path = self.path(f"{export_key}/{service}/{name}")
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def remove(self, key: str) -> None:
        """Delete a file or folder of the store."""
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
