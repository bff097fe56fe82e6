"""Audit's queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from audit.domain import GENESIS_HASH
from audit.models import (
    AuditCheckpoint,
    AuditEntry,
    AuditPersonal,
    ChainLink,
    PurgedAccount,
    PurgeRecord,
)

# One lock for the global chain: its appends (and a checkpoint's reading of the heads) take
# their turn. Any 64-bit number no other lock of audit's database uses.
GLOBAL_CHAIN_LOCK = 0x6175646974  # "audit"


class AuditRepository:
    """Reads and appends the trail inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_chains(self) -> None:
        """Serialise appends to the chains for the rest of the transaction."""
        connection = await self.session.connection()
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": GLOBAL_CHAIN_LOCK}
        )

    async def global_head(self) -> ChainLink | None:
        """The newest link of the global chain."""
        result = await self.session.exec(
            select(ChainLink).order_by(col(ChainLink.global_seq).desc()).limit(1)
        )
        return result.first()

    async def account_head(self, account_id: UUID) -> AuditEntry | None:
        """The account's newest entry."""
        result = await self.session.exec(
            select(AuditEntry)
            .where(AuditEntry.account_id == account_id)
            .order_by(col(AuditEntry.account_seq).desc())
            .limit(1)
        )
        return result.first()

    async def recorded(self, event_id: UUID) -> bool:
        """Whether an event is in the trail already."""
        result = await self.session.exec(
            select(AuditEntry.global_seq).where(AuditEntry.event_id == event_id)
        )
        return result.first() is not None

    async def entries(self, account_id: UUID) -> Sequence[AuditEntry]:
        """The account's chain in order."""
        result = await self.session.exec(
            select(AuditEntry)
            .where(AuditEntry.account_id == account_id)
            .order_by(col(AuditEntry.account_seq))
        )
        return result.all()

    async def personal_parts(self, account_id: UUID | None = None) -> Sequence[AuditPersonal]:
        """The personal parts still kept (of one account, or all)."""
        query = select(AuditPersonal)
        if account_id is not None:
            query = query.where(AuditPersonal.account_id == account_id)
        result = await self.session.exec(query)
        return result.all()

    async def all_entries(self) -> Sequence[AuditEntry]:
        """Every entry, in global order."""
        result = await self.session.exec(select(AuditEntry).order_by(col(AuditEntry.global_seq)))
        return result.all()

    async def links(self) -> Sequence[ChainLink]:
        """The global chain in order."""
        result = await self.session.exec(select(ChainLink).order_by(col(ChainLink.global_seq)))
        return result.all()

    async def purged_references(self) -> frozenset[str]:
        """The keyed references of purged accounts."""
        result = await self.session.exec(select(PurgedAccount.account_reference))
        return frozenset(result.all())

    async def purge_records(self) -> Sequence[PurgeRecord]:
        """The purge certificates chained, in global order."""
        result = await self.session.exec(select(PurgeRecord).order_by(col(PurgeRecord.global_seq)))
        return result.all()

    async def first_suspect(self) -> int | None:
        """The first global sequence where the database-side check of both chains finds any
        difference, or None (see FIRST_SUSPECT_SQL)."""
        connection = await self.session.connection()
        # Two window sorts over the whole trail: in memory, not on disk.
        await connection.execute(text("SET LOCAL work_mem = '256MB'"))
        result = await connection.execute(text(FIRST_SUSPECT_SQL), {"genesis": GENESIS_HASH})
        return result.scalar_one_or_none()

    async def counts(self) -> tuple[int, int]:
        """How many entries and links the trail holds."""
        connection = await self.session.connection()
        result = await connection.execute(
            text("SELECT (SELECT count(*) FROM audit_entry), (SELECT count(*) FROM chain_link)")
        )
        entries, links = result.one()
        return int(entries), int(links)

    async def account_ids(self) -> list[UUID]:
        """Every account with entries."""
        connection = await self.session.connection()
        result = await connection.execute(text("SELECT DISTINCT account_id FROM audit_entry"))
        return [row[0] for row in result.all()]

    async def link_hash(self, global_seq: int) -> str | None:
        """The hash of one link of the global chain."""
        result = await self.session.exec(
            select(ChainLink.hash).where(col(ChainLink.global_seq) == global_seq)
        )
        return result.first()

    async def link_digests(self, global_seqs: list[int]) -> dict[int, str]:
        """The digests the global chain holds at these sequences."""
        result = await self.session.exec(
            select(ChainLink.global_seq, ChainLink.digest).where(
                col(ChainLink.global_seq).in_(global_seqs)
            )
        )
        return dict(result.all())

    async def heads_matching(self, heads: list[tuple[UUID, int, str]]) -> int:
        """How many of these (account, sequence, hash) heads the account chains hold."""
        connection = await self.session.connection()
        result = await connection.execute(
            text(
                "SELECT count(*) FROM audit_entry e JOIN unnest("
                "CAST(:accounts AS uuid[]), CAST(:seqs AS bigint[]), CAST(:hashes AS text[])"
                ") AS head(account_id, seq, hash) ON e.account_id = head.account_id "
                "AND e.account_seq = head.seq AND e.account_hash = head.hash"
            ),
            {
                "accounts": [account for account, _, _ in heads],
                "seqs": [seq for _, seq, _ in heads],
                "hashes": [hash_ for _, _, hash_ in heads],
            },
        )
        return int(result.scalar_one())

    async def checkpoints(self) -> Sequence[AuditCheckpoint]:
        """Every checkpoint, oldest first."""
        result = await self.session.exec(
            select(AuditCheckpoint).order_by(col(AuditCheckpoint.number))
        )
        return result.all()

    async def latest_checkpoint(self) -> AuditCheckpoint | None:
        """The newest checkpoint."""
        result = await self.session.exec(
            select(AuditCheckpoint).order_by(col(AuditCheckpoint.number).desc()).limit(1)
        )
        return result.first()

    async def heads_since(self, global_seq: int) -> Sequence[tuple[UUID, int, str]]:
        """Each account's newest entry among those after a global sequence."""
        connection = await self.session.connection()
        result = await connection.execute(
            text(
                "SELECT DISTINCT ON (account_id) account_id, account_seq, account_hash "
                "FROM audit_entry WHERE global_seq > :after "
                "ORDER BY account_id, account_seq DESC"
            ),
            {"after": global_seq},
        )
        return [(row[0], row[1], row[2]) for row in result.all()]


@dataclass(frozen=True)
class TrailQuery:
    """What to read of the trail: filters, and a page after a global sequence."""

    account_id: UUID | None = None
    actor_id: str | None = None
    purpose: str | None = None
    grant_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: int = 0
    limit: int = 100


async def query_trail(
    session: AsyncSession, query: TrailQuery
) -> Sequence[tuple[AuditEntry, AuditPersonal | None]]:
    """Entries matching the query, oldest first, each with its personal part if kept."""
    statement = (
        select(AuditEntry, AuditPersonal)
        .join(
            AuditPersonal,
            col(AuditPersonal.global_seq) == col(AuditEntry.global_seq),
            isouter=True,
        )
        .where(col(AuditEntry.global_seq) > query.after)
        .order_by(col(AuditEntry.global_seq))
        .limit(query.limit)
    )
    if query.account_id is not None:
        statement = statement.where(AuditEntry.account_id == query.account_id)
    if query.actor_id is not None:
        statement = statement.where(AuditEntry.actor_id == query.actor_id)
    if query.purpose is not None:
        statement = statement.where(AuditEntry.purpose == query.purpose)
    if query.grant_id is not None:
        statement = statement.where(AuditEntry.grant_id == query.grant_id)
    if query.since is not None:
        statement = statement.where(col(AuditEntry.occurred_at) >= query.since)
    if query.until is not None:
        statement = statement.where(col(AuditEntry.occurred_at) < query.until)
    result = await session.exec(statement)
    return [(entry, part) for entry, part in result.all()]


def _json_text(column: str) -> str:
    """SQL for a text column as a JSON string, escaped as Python's json.dumps escapes it."""
    return f"to_json({column})"


def _json_time(column: str) -> str:
    """SQL for a timestamp as the JSON form the entries were hashed over (pydantic's: UTC,
    microseconds only when there are some, 'Z'); '.000000' cannot occur before the fraction."""
    return (
        f"""'"', replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), """
        """'.000000', ''), 'Z"'"""
    )


# An entry's canonical JSON (RFC 8785: keys sorted, compact), built by the database from the
# stored row, byte for byte as `domain.canonical(entry.chained_fields())` (a test holds them
# equal over hostile text). One concat(), not a chain of ||, which copies the string each time.
ENTRY_CANONICAL_SQL = (
    """concat('{"account_id":"', e.account_id, '","account_seq":', e.account_seq"""
    f""", ',"actor_id":', {_json_text("e.actor_id")}"""
    f""", ',"actor_type":', {_json_text("e.actor_type")}"""
    """, ',"event_id":"', e.event_id, '","grant_id":'"""
    """, COALESCE('"' || e.grant_id || '"', 'null')"""
    f""", ',"kind":', {_json_text("e.kind")}"""
    f""", ',"occurred_at":', {_json_time("e.occurred_at")}"""
    f""", ',"outcome":', {_json_text("e.outcome")}"""
    f""", ',"personal_commitment":', {_json_text("e.personal_commitment")}"""
    f""", ',"purpose":', {_json_text("e.purpose")}"""
    f""", ',"recorded_at":', {_json_time("e.recorded_at")}"""
    f""", ',"resource_id":', {_json_text("e.resource_id")}"""
    f""", ',"resource_type":', {_json_text("e.resource_type")}, '}}')"""
)
PERSONAL_CANONICAL_SQL = (
    f"""concat('{{"actor_name":', {_json_text("p.actor_name")}"""
    f""", ',"reason":', {_json_text("p.reason")}"""
    f""", ',"salt":', {_json_text("p.salt")}, '}}')"""
)


def _sha256_hex(sql: str) -> str:
    return f"encode(sha256({sql}), 'hex')"


def _link_sql(previous: str, digest: str) -> str:
    """SQL of `domain.link`: SHA-256 of the previous hash's bytes and the digest's."""
    return _sha256_hex(f"decode({previous}, 'hex') || decode({digest}, 'hex')")


# Every row of both chains checked at once, in the database: each entry's digest and account
# link, each global link, each link's predecessor and number, each kept personal part's
# commitment. It gives the first global sequence where anything differs, or nothing; it names
# no problem (the exact check in Python does). A link without an entry passes only when its
# account was purged or it is a purge record's (whose digest the caller checks).
# (Composed of this module's constants only: S608 does not apply.)
FIRST_SUSPECT_SQL = f"""
WITH entry AS (
    SELECT e.global_seq, e.account_id, e.account_seq, e.account_previous_hash, e.account_hash,
           {_sha256_hex(f"convert_to({ENTRY_CANONICAL_SQL}, 'UTF8')")} AS digest,
           e.personal_commitment,
           lag(e.account_hash) OVER account_order AS prior_hash,
           lag(e.account_seq) OVER account_order AS prior_seq
    FROM audit_entry e
    WINDOW account_order AS (PARTITION BY e.account_id ORDER BY e.account_seq)
), chain AS (
    SELECT l.global_seq, l.account_reference, l.digest, l.previous_hash, l.hash,
           lag(l.hash) OVER global_order AS prior_hash,
           lag(l.global_seq) OVER global_order AS prior_seq
    FROM chain_link l
    WINDOW global_order AS (ORDER BY l.global_seq)
), personal AS (
    SELECT p.global_seq, {_sha256_hex(f"convert_to({PERSONAL_CANONICAL_SQL}, 'UTF8')")} AS sealed
    FROM audit_personal p
)
SELECT COALESCE(c.global_seq, e.global_seq)
FROM chain c
FULL JOIN entry e ON e.global_seq = c.global_seq
LEFT JOIN personal p ON p.global_seq = e.global_seq
WHERE (
        e.global_seq IS NULL
        AND c.account_reference NOT IN (SELECT account_reference FROM purged_account)
        AND NOT EXISTS (SELECT 1 FROM purge_record r WHERE r.global_seq = c.global_seq)
      )
   OR c.global_seq IS NULL
   OR c.digest <> e.digest
   OR e.account_hash <> {_link_sql("e.account_previous_hash", "e.digest")}
   OR e.account_previous_hash <> COALESCE(e.prior_hash, :genesis)
   OR e.account_seq <> COALESCE(e.prior_seq, 0) + 1
   OR c.hash <> {_link_sql("c.previous_hash", "c.digest")}
   OR c.previous_hash <> COALESCE(c.prior_hash, :genesis)
   OR c.global_seq <> COALESCE(c.prior_seq, 0) + 1
   OR p.sealed <> e.personal_commitment
ORDER BY 1
LIMIT 1
"""  # noqa: S608
