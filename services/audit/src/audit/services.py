"""Audit's use cases: append accesses to the chain, verify it, export and purge it."""

from __future__ import annotations

from uuid import UUID

from audit.domain import GENESIS_HASH, entry_hash, first_broken_link
from audit.models import AccessLogEntry
from audit.repository import AuditRepository
from shared.contracts import (
    DataAccessed,
    Envelope,
)
from shared.db import SessionFactory
from shared.unit_of_work import Work


class AuditService:
    """The access trail."""

    def __init__(self, *, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def record_access(self, *, event: Envelope[DataAccessed], work: Work) -> None:
        """Append an access to the account's chain (STAFF-ACCESS, PURPOSE)."""
        access = event.data
        repo = AuditRepository(work.session)
        await repo.lock_chain(access.account_id)
        head = await repo.chain_head(access.account_id)
        entry = AccessLogEntry(
            account_id=access.account_id,
            sequence=(head.sequence + 1) if head else 1,
            event_id=event.id,
            access_id=access.access_id,
            actor=access.actor,
            actor_id=access.actor_id,
            actor_name=access.actor_name,
            purpose=access.purpose,
            reason=access.reason,
            grant_id=access.grant_id,
            outcome=access.outcome,
            resource_type=access.resource_type,
            resource_id=access.resource_id,
            accessed_at=access.accessed_at,
            previous_hash=head.entry_hash if head else GENESIS_HASH,
            entry_hash="",
        )
        entry.entry_hash = entry_hash(entry.previous_hash, entry.hashed_fields())
        repo.session.add(entry)

    async def access_log(self, account_id: UUID) -> list[AccessLogEntry]:
        """The account's trail, oldest first."""
        async with self.sessions() as session:
            return await AuditRepository(session).entries(account_id)

    async def verify_chain(self, account_id: UUID) -> int | None:
        """The sequence of the first tampered entry of the account, or None if the chain holds."""
        entries = await self.access_log(account_id)
        return first_broken_link(
            (e.sequence, e.previous_hash, e.entry_hash, e.hashed_fields()) for e in entries
        )
