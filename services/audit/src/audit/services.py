"""Audit's use cases: append accesses to the chain, verify it, export and purge it."""

from __future__ import annotations

from uuid import UUID

from audit.domain import GENESIS_HASH, entry_hash, first_broken_link
from audit.models import AccessLogEntry
from audit.repository import AuditRepository
from shared.contracts import (
    AccessActor,
    AccessPurpose,
    DataAccessed,
    Envelope,
    LegalHoldPlaced,
    LegalHoldReleased,
)
from shared.db import SessionFactory
from shared.unit_of_work import Work

HOLD_PLACED, HOLD_RELEASED = "hold-placed", "hold-released"  # the entry's outcome


class AuditService:
    """The access trail."""

    def __init__(self, *, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def record_access(self, *, event: Envelope[DataAccessed], work: Work) -> None:
        """Append an access to the account's chain (STAFF-ACCESS, PURPOSE)."""
        access = event.data
        await self._append(
            work,
            AccessLogEntry(
                account_id=access.account_id,
                sequence=0,
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
                previous_hash="",
                entry_hash="",
            ),
        )

    async def record_legal_hold(
        self, event: Envelope[LegalHoldPlaced] | Envelope[LegalHoldReleased], work: Work
    ) -> None:
        """Append the placing or releasing of a legal hold to the account's chain (LAW)."""
        act = event.data
        if isinstance(act, LegalHoldPlaced):
            who, name, when = act.placed_by, act.placed_by_name, act.placed_at
            reason, outcome = f"{act.legal_basis}: {act.reason}", HOLD_PLACED
        else:
            who, name, when = act.released_by, act.released_by_name, act.released_at
            reason, outcome = act.reason, HOLD_RELEASED
        await self._append(
            work,
            AccessLogEntry(
                account_id=act.account_id,
                sequence=0,
                event_id=event.id,
                access_id=act.hold_id,
                actor=AccessActor.LEGAL,
                actor_id=str(who),
                actor_name=name,
                purpose=AccessPurpose.LEGAL,
                reason=reason,
                grant_id=None,
                outcome=outcome,
                resource_type="legal_hold",
                resource_id=str(act.hold_id),
                accessed_at=when,
                previous_hash="",
                entry_hash="",
            ),
        )

    @staticmethod
    async def _append(work: Work, entry: AccessLogEntry) -> None:
        """Chain the entry after the account's head, under the chain's lock."""
        repo = AuditRepository(work.session)
        await repo.lock_chain(entry.account_id)
        head = await repo.chain_head(entry.account_id)
        entry.sequence = (head.sequence + 1) if head else 1
        entry.previous_hash = head.entry_hash if head else GENESIS_HASH
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
