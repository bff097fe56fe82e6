"""The chains' rules (STAFF-ACCESS): canonical JSON, both chains, commitments, and each kind of
tampering found at the entry where it shows."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest
import rfc8785

from audit.domain import (
    GENESIS_HASH,
    ChainedEntry,
    Head,
    Link,
    canonical,
    check_account_chain,
    check_global_chain,
    entry_digest,
    link,
    personal_commitment,
)

ACCOUNT = str(uuid.uuid4())
HOSTILE = [
    'quote " backslash \\ slash /',
    "control \x00 \x01 \x1f \x7f tab\t newline\n return\r",
    "é ü ß 東京 \u2028 \u2029 😀",
    "",
    "<script>alert(1)</script>",
]


@pytest.mark.clause("STAFF-ACCESS")
@pytest.mark.parametrize("text", HOSTILE)
def test_staff_access_the_canonical_json_is_rfc_8785s_for_the_entrys_types(text: str) -> None:
    value = {"b": text, "a": 12345678901, "c": None, "é": text, "z": -1}
    assert canonical(value) == rfc8785.dumps(value)


def _chain(n: int, account: str = ACCOUNT) -> tuple[list[ChainedEntry], list[Link], dict[int, Any]]:
    entries, links, parts = [], [], {}
    account_previous = global_previous = GENESIS_HASH
    for seq in range(1, n + 1):
        salt = f"{seq:032x}"
        part = {"actor_name": f"Staff {seq}", "reason": f"TICKET-{seq}"}
        fields = {
            "account_id": account,
            "account_seq": seq,
            "purpose": "support",
            "personal_commitment": personal_commitment(salt, part),
        }
        digest = entry_digest(fields)
        entry = ChainedEntry(seq, fields, account_previous, link(account_previous, digest))
        entries.append(entry)
        links.append(Link(seq, "ref", digest, global_previous, link(global_previous, digest)))
        parts[seq] = (salt, part)
        account_previous, global_previous = entry.account_hash, links[-1].hash
    return entries, links, parts


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_intact_chains_verify_with_and_without_personal_parts() -> None:
    entries, links, parts = _chain(5)
    by_seq = {e.global_seq: e for e in entries}
    assert (
        check_account_chain(entries, personal=parts, signed_head=Head(5, entries[-1].account_hash))
        is None
    )
    assert check_account_chain(entries, personal={}) is None, "erased parts: still verifies"
    assert check_global_chain(links, by_seq, signed_head=Head(5, links[-1].hash)) is None


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_a_changed_field_is_found_at_its_entry() -> None:
    entries, links, _ = _chain(5)
    entries[2] = replace(entries[2], fields={**entries[2].fields, "purpose": "legal"})
    found = check_account_chain(entries)
    assert found is not None
    assert (found.problem, found.account_seq) == ("changed", 3)
    found = check_global_chain(links, {e.global_seq: e for e in entries})
    assert found is not None
    assert (found.problem, found.global_seq) == ("changed", 3)


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_a_changed_personal_part_is_found() -> None:
    entries, _, parts = _chain(3)
    salt, part = parts[2]
    parts[2] = (salt, {**part, "reason": "nothing to see"})
    found = check_account_chain(entries, personal=parts)
    assert found is not None
    assert (found.problem, found.account_seq) == ("personal-part-changed", 2)


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_a_removed_entry_is_found_where_the_gap_is() -> None:
    entries, links, _ = _chain(5)
    del entries[1]
    found = check_account_chain(entries)
    assert found is not None
    assert (found.problem, found.account_seq) == ("removed", 3)
    found = check_global_chain(links, {e.global_seq: e for e in entries})
    assert found is not None
    assert (found.problem, found.global_seq) == ("removed", 2)
    del links[1]
    found = check_global_chain(links, {e.global_seq: e for e in entries})
    assert found is not None
    assert (found.problem, found.global_seq) == ("removed", 2)


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_an_inserted_entry_with_a_rehashed_tail_is_caught_by_the_checkpoint() -> None:
    """Re-hashing everything after a forged entry keeps the chain self-consistent: the signed
    head is what it no longer matches."""
    entries, _, _ = _chain(4)
    signed = Head(4, entries[-1].account_hash)
    forged = [entries[0]]
    previous = entries[0].account_hash
    for seq, source in enumerate(entries[1:], start=2):
        fields = {**source.fields, "account_seq": seq, "purpose": "security"}
        forged.append(ChainedEntry(seq, fields, previous, link(previous, entry_digest(fields))))
        previous = forged[-1].account_hash
    assert check_account_chain(forged) is None, "alone, a rewritten chain holds together"
    found = check_account_chain(forged, signed_head=signed)
    assert found is not None
    assert (found.problem, found.account_seq) == ("changed", 4)


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_reordered_entries_are_found() -> None:
    entries, _, _ = _chain(4)
    entries[1], entries[2] = entries[2], entries[1]
    found = check_account_chain(entries)
    assert found is not None
    assert found.account_seq in (2, 3)


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_truncation_is_found_against_the_signed_heads() -> None:
    entries, links, _ = _chain(5)
    signed_account, signed_global = Head(5, entries[-1].account_hash), Head(5, links[-1].hash)
    entries, links = entries[:3], links[:3]
    assert check_account_chain(entries) is None, "without a checkpoint, nothing shows"
    found = check_account_chain(entries, signed_head=signed_account)
    assert found is not None
    assert (found.problem, found.account_seq) == ("truncated", 4)
    found = check_global_chain(links, {e.global_seq: e for e in entries}, signed_head=signed_global)
    assert found is not None
    assert (found.problem, found.global_seq) == ("truncated", 4)


@pytest.mark.clause("TERMINATION")
def test_termination_a_purged_accounts_links_verify_without_their_entries() -> None:
    _, links, _ = _chain(3)
    assert check_global_chain(links, {}, purged=frozenset({"ref"})) is None
    found = check_global_chain(links, {})
    assert found is not None
    assert found.problem == "removed"


@pytest.mark.clause("STAFF-ACCESS")
def test_staff_access_a_commitment_reveals_nothing_without_its_salt() -> None:
    part = {"actor_name": "Ann", "reason": "x"}
    assert personal_commitment("a" * 32, part) != personal_commitment("b" * 32, part)
