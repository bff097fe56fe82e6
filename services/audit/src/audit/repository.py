"""Audit's queries."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from audit.models import AccessLogEntry


class AuditRepository:
    """Reads and appends the trail inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_chain(self, account_id: UUID) -> None:
        """Serialise appends to one account's chain for the rest of the transaction."""
        connection = await self.session.connection()
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": str(account_id)},
        )

    async def chain_head(self, account_id: UUID) -> AccessLogEntry | None:
        """The account's newest entry."""
        result = await self.session.exec(
            select(AccessLogEntry)
            .where(AccessLogEntry.account_id == account_id)
            .order_by(col(AccessLogEntry.sequence).desc())
            .limit(1)
        )
        return result.first()

    async def entries(self, account_id: UUID) -> list[AccessLogEntry]:
        """The account's chain in order."""
        result = await self.session.exec(
            select(AccessLogEntry)
            .where(AccessLogEntry.account_id == account_id)
            .order_by(col(AccessLogEntry.sequence))
        )
        return list(result.all())
