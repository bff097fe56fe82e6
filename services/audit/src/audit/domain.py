"""The hash chain that makes the access trail tamper-evident; pure functions, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from shared.export_store import canonical_json

GENESIS_HASH = "0" * 64


def entry_hash(previous_hash: str, entry: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash and the entry's canonical JSON."""
    return hashlib.sha256(f"{previous_hash}\n{canonical_json(dict(entry))}".encode()).hexdigest()


def first_broken_link(chain: Iterable[tuple[int, str, str, Mapping[str, Any]]]) -> int | None:
    """The sequence number of the first entry whose hash does not follow, or None if intact.

    `chain` yields (sequence, previous_hash, stored_hash, hashed_fields) in sequence order.
    """
    expected_previous = GENESIS_HASH
    for sequence, previous_hash, stored_hash, fields in chain:
        if previous_hash != expected_previous or entry_hash(previous_hash, fields) != stored_hash:
            return sequence
        expected_previous = stored_hash
    return None
