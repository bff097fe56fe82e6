"""The trail's pure rules: what an entry is, how it is chained, committed to and checked.

Each entry is hashed over its canonical JSON (RFC 8785) and chained twice: into its account's
chain and into the global chain of every entry. Personal data (names, free-text reasons) is not
in the entry: the entry holds a salted commitment to it, so erasing the personal part leaves
every chain verifiable. Signed checkpoints of the chains' heads catch what re-hashing would hide:
entries removed from the end, or a chain rewritten from some point on.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import orjson

GENESIS_HASH = "0" * 64
CHECKPOINT_FORMAT = "quittance-audit-checkpoint/1"


class EntryKind(StrEnum):
    """What an entry records."""

    DATA_ACCESS = "data-access"  # a read of customer data, granted or refused
    LEGAL_HOLD_PLACED = "legal-hold-placed"
    LEGAL_HOLD_RELEASED = "legal-hold-released"
    GRANT_OPENED = "grant-opened"  # an account's user let a staff member read, for a purpose
    GRANT_REVOKED = "grant-revoked"
    GRANT_EXPIRED = "grant-expired"  # a grant reached its end unrevoked (audit notes it)
    PURGE_CERTIFIED = "purge-certified"  # the account's signed purge certificate (global chain)


class AlertKind(StrEnum):
    """What audit raises an alert for."""

    MANY_ACCOUNTS_READ = "many-accounts-read"  # one staff member, more accounts in an hour
    READ_UNDER_ENDED_GRANT = "read-under-ended-grant"  # a read after its grant was revoked/lapsed
    VERIFICATION_FAILED = "verification-failed"  # the scheduled check found the trail altered


# The entry's chained fields, and its personal fields (kept apart, committed to).
CHAINED_FIELDS = (
    "account_id",
    "account_seq",
    "event_id",
    "kind",
    "actor_type",
    "actor_id",
    "purpose",
    "grant_id",
    "outcome",
    "resource_type",
    "resource_id",
    "occurred_at",
    "recorded_at",
    "personal_commitment",
)
PERSONAL_FIELDS = ("actor_name", "reason")


def canonical(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of an object of strings, integers and nulls.

    For those types (and keys in ASCII) it is exactly orjson's sorted output (a test holds it
    to the `rfc8785` package over hostile text): many times faster, which the append needs.
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def json_time(moment: datetime) -> str:
    """A UTC time as the entries' JSON holds it (pydantic's form: microseconds only when there
    are some, and 'Z')."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry_digest(fields: Mapping[str, Any]) -> str:
    """SHA-256 of the entry's canonical JSON (its chained fields only)."""
    return hashlib.sha256(canonical(fields)).hexdigest()


def link(previous_hash: str, digest: str) -> str:
    """The chain's next hash: SHA-256 of the previous hash and the entry's digest."""
    return hashlib.sha256(bytes.fromhex(previous_hash) + bytes.fromhex(digest)).hexdigest()


def personal_commitment(salt: str, personal: Mapping[str, Any]) -> str:
    """A salted commitment to the personal part: it proves the part once shown, and, salted,
    says nothing of a short name once the part is erased."""
    return hashlib.sha256(canonical({"salt": salt, **personal})).hexdigest()


@dataclass(frozen=True)
class ChainedEntry:
    """An entry as stored: its chained fields and its account chain's hashes."""

    global_seq: int
    fields: Mapping[str, Any]
    account_previous_hash: str
    account_hash: str

    @property
    def account_id(self) -> str:
        """The account, as text (a purge record names it only by its keyed reference)."""
        return str(self.fields.get("account_id", self.fields.get("account_reference")))

    @property
    def account_seq(self) -> int:
        """The entry's place in its account's chain, from 1 (0: in the global chain only)."""
        return int(self.fields.get("account_seq", 0))


@dataclass(frozen=True)
class Finding:
    """The first thing wrong with a chain: what, where, and how it shows."""

    problem: str  # changed, removed, inserted, reordered, truncated, personal-part-changed
    global_seq: int | None
    account_id: str | None
    account_seq: int | None
    detail: str


@dataclass(frozen=True)
class Head:
    """A chain's head as a checkpoint signed it."""

    seq: int
    hash: str


def check_account_chain(
    entries: Iterable[ChainedEntry],
    *,
    start_seq: int = 1,
    start_previous: str = GENESIS_HASH,
    signed_head: Head | None = None,
    personal: Mapping[int, tuple[str, Mapping[str, Any]]] | None = None,
) -> Finding | None:
    """The first finding in one account's chain (entries in `account_seq` order), or None.

    `signed_head` is the account's head in the newest checkpoint: a chain that ends before it
    was truncated. `personal` maps a global sequence to (salt, personal part) where the part
    is still kept; an erased part is simply absent.
    """
    expected_seq, previous = start_seq, start_previous
    seen_hashes: set[str] = set()
    hashes_by_seq: dict[int, str] = {}
    last: ChainedEntry | None = None
    for entry in entries:
        where = (entry.global_seq, entry.account_id, entry.account_seq)
        if entry.account_seq > expected_seq:
            return Finding("removed", *where, f"entry {expected_seq} of the account is missing")
        if entry.account_seq < expected_seq:
            return Finding("inserted", *where, f"a second entry {entry.account_seq}")
        intact = link(entry.account_previous_hash, entry_digest(entry.fields)) == entry.account_hash
        if not intact:
            return Finding("changed", *where, "its content does not match its hash")
        if entry.account_previous_hash != previous:
            problem = "reordered" if entry.account_previous_hash in seen_hashes else "inserted"
            return Finding(problem, *where, "it does not follow the entry before it")
        kept = (personal or {}).get(entry.global_seq)
        if kept is not None:
            salt, part = kept
            if personal_commitment(salt, part) != entry.fields["personal_commitment"]:
                return Finding("personal-part-changed", *where, "names or reason were changed")
        seen_hashes.add(entry.account_hash)
        hashes_by_seq[entry.account_seq] = entry.account_hash
        previous, expected_seq, last = entry.account_hash, expected_seq + 1, entry
    if signed_head is not None:
        if last is None or last.account_seq < signed_head.seq:
            ends = 0 if last is None else last.account_seq
            return Finding(
                "truncated",
                None,
                None if last is None else last.account_id,
                ends + 1,
                f"the chain ends at {ends}; a checkpoint signed it up to {signed_head.seq}",
            )
        if hashes_by_seq.get(signed_head.seq, signed_head.hash) != signed_head.hash:
            return Finding(
                "changed",
                None,
                last.account_id,
                signed_head.seq,
                "the chain was rewritten: this entry is not the one a checkpoint signed",
            )
    return None


@dataclass(frozen=True)
class Link:
    """A link of the global chain: it names its account only by keyed reference, and outlives
    the account's purge (the entry goes, the link stays)."""

    global_seq: int
    account_reference: str
    digest: str
    previous_hash: str
    hash: str


def check_global_chain(
    links: Iterable[Link],
    entries: Mapping[int, ChainedEntry],
    *,
    start_previous: str = GENESIS_HASH,
    purged: frozenset[str] = frozenset(),
    signed_head: Head | None = None,
) -> Finding | None:
    """The first finding in the global chain (links in order), or None.

    `entries` are the entries still stored, by global sequence; an entry of an account whose
    reference is in `purged` is gone, any other must be there and match its link's digest.
    """
    previous, last_seq = start_previous, None
    signed_hash_seen = signed_head is None
    for item in links:
        global_seq, digest = item.global_seq, item.digest
        expected = (last_seq + 1) if last_seq is not None else None
        if expected is not None and global_seq != expected:
            return Finding("removed", expected, None, None, "the chain skips this link")
        if item.previous_hash != previous or link(item.previous_hash, digest) != item.hash:
            return Finding("inserted", global_seq, None, None, "the link does not follow")
        if signed_head is not None and global_seq == signed_head.seq:
            if item.hash != signed_head.hash:
                return Finding(
                    "changed",
                    global_seq,
                    None,
                    None,
                    "the chain was rewritten: this link is not the one a checkpoint signed",
                )
            signed_hash_seen = True
        entry = entries.get(global_seq)
        if entry is None:
            if item.account_reference in purged:
                previous, last_seq = item.hash, global_seq
                continue
            return Finding("removed", global_seq, None, None, "no entry for this link")
        if entry_digest(entry.fields) != digest:
            return Finding(
                "changed",
                global_seq,
                entry.account_id,
                entry.account_seq,
                "the entry does not match the digest the chain holds",
            )
        previous, last_seq = item.hash, global_seq
    if not signed_hash_seen and signed_head is not None:
        return Finding(
            "truncated",
            (last_seq or 0) + 1,
            None,
            None,
            f"the chain ends at {last_seq or 0}; a checkpoint signed it up to {signed_head.seq}",
        )
    return None


def checkpoint_payload(
    *,
    number: int,
    previous_checkpoint: str,
    global_head: Head,
    account_heads: Mapping[str, Head],
    created_at: str,
    signing_key_id: str,
) -> bytes:
    """What a checkpoint signs: its number, the previous checkpoint's hash, the global head and
    the heads of the accounts that changed since (by keyed reference, not by id)."""
    document = {
        "format": CHECKPOINT_FORMAT,
        "number": number,
        "previous_checkpoint_sha256": previous_checkpoint,
        "global": {"seq": global_head.seq, "hash": global_head.hash},
        "accounts": {
            reference: {"seq": head.seq, "hash": head.hash}
            for reference, head in sorted(account_heads.items())
        },
        "created_at": created_at,
        "signing_key_id": signing_key_id,
    }
    return canonical(document)


# A purge record's link names the account so: not as the purged account's own links, whose
# missing entries the purge explains, so a deleted purge record is still caught.
PURGE_RECORD_PREFIX = "purge:"


def account_reference(account_id: UUID, key: bytes) -> str:
    """A keyed hash of the account id: links and checkpoints name the account only so."""
    return hmac.new(key, str(account_id).encode(), hashlib.sha256).hexdigest()
