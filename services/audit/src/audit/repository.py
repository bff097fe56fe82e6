"""Audit's queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from audit.models import (
    AuditCheckpoint,
    AuditEntry,
    AuditPersonal,
    ChainLink,
    PurgedAccount,
    PurgeRecord,
)
from shared.db import driver_in_transaction

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

    async def purged_references(self) -> frozenset[str]:
        """The keyed references of purged accounts."""
        result = await self.session.exec(select(PurgedAccount.account_reference))
        return frozenset(result.all())

    async def purge_records(self) -> Sequence[PurgeRecord]:
        """The purge certificates chained, in global order."""
        result = await self.session.exec(select(PurgeRecord).order_by(col(PurgeRecord.global_seq)))
        return result.all()

    async def driver(self) -> asyncpg.Connection:
        """The transaction's asyncpg connection, for the scan's streamed read."""
        return await driver_in_transaction(await self.session.connection())

    async def trail_end(self) -> int:
        """The highest global sequence of any link or entry (0 for an empty trail)."""
        connection = await self.session.connection()
        result = await connection.execute(
            text(
                "SELECT GREATEST((SELECT max(global_seq) FROM chain_link), "
                "(SELECT max(global_seq) FROM audit_entry), 0)"
            )
        )
        return int(result.scalar_one())

    async def entries_between(self, first: int, last: int) -> Sequence[AuditEntry]:
        """The entries with a global sequence in the range, in global order."""
        result = await self.session.exec(
            select(AuditEntry)
            .where(col(AuditEntry.global_seq).between(first, last))
            .order_by(col(AuditEntry.global_seq))
        )
        return result.all()

    async def links_between(self, first: int, last: int) -> Sequence[ChainLink]:
        """The global chain's links in the range, in order."""
        result = await self.session.exec(
            select(ChainLink)
            .where(col(ChainLink.global_seq).between(first, last))
            .order_by(col(ChainLink.global_seq))
        )
        return result.all()

    async def account_hashes(self, places: list[tuple[UUID, int]]) -> dict[tuple[UUID, int], str]:
        """The account-chain hashes stored at these (account, sequence) places."""
        if not places:
            return {}
        connection = await self.session.connection()
        result = await connection.execute(
            text(
                "SELECT e.account_id, e.account_seq, e.account_hash FROM audit_entry e "
                "JOIN unnest(CAST(:accounts AS uuid[]), CAST(:seqs AS bigint[])) "
                "AS place(account_id, seq) "
                "ON e.account_id = place.account_id AND e.account_seq = place.seq"
            ),
            {
                "accounts": [account for account, _ in places],
                "seqs": [seq for _, seq in places],
            },
        )
        return {(row[0], row[1]): row[2] for row in result.all()}

    async def link_hash(self, global_seq: int) -> str | None:
        """The hash of one link of the global chain."""
        result = await self.session.exec(
            select(ChainLink.hash).where(col(ChainLink.global_seq) == global_seq)
        )
        return result.first()

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
