"""The hash chain makes the trail tamper-evident (STAFF-ACCESS)."""

from __future__ import annotations

from typing import Any

from audit.domain import GENESIS_HASH, entry_hash, first_broken_link


def _chain(n: int) -> list[tuple[int, str, str, dict[str, Any]]]:
    chain = []
    previous = GENESIS_HASH
    for sequence in range(1, n + 1):
        fields = {"sequence": sequence, "actor_name": f"staff {sequence}", "purpose": "support"}
        digest = entry_hash(previous, fields)
        chain.append((sequence, previous, digest, fields))
        previous = digest
    return chain


def test_staff_access_an_intact_chain_verifies() -> None:
    assert first_broken_link(_chain(5)) is None


def test_staff_access_an_edited_entry_is_named() -> None:
    chain = _chain(5)
    sequence, previous, digest, fields = chain[2]
    chain[2] = (sequence, previous, digest, {**fields, "purpose": "legal"})
    assert first_broken_link(chain) == 3


def test_staff_access_a_deleted_entry_is_named_by_its_successor() -> None:
    chain = _chain(5)
    del chain[1]
    assert first_broken_link(chain) == 3


def test_staff_access_a_rehashed_edit_still_breaks_the_next_link() -> None:
    chain = _chain(4)
    sequence, previous, _, fields = chain[1]
    forged = {**fields, "actor_name": "nobody"}
    chain[1] = (sequence, previous, entry_hash(previous, forged), forged)
    assert first_broken_link(chain) == 3
