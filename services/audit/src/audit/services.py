"""Audit's use cases: append accesses to the chain, verify it, export and purge it."""

from __future__ import annotations

from uuid import UUID

from audit.domain import GENESIS_HASH, entry_hash, first_broken_link
from audit.models import AccessLogEntry
from audit.repository import AuditRepository
from shared.contracts import (
    DataAccessed,
    Envelope,
    ExportRequested,
    ExportSliceWritten,
    PurgeCompleted,
    PurgeRequested,
)
from shared.db import SessionFactory, transaction
from shared.export_store import ExportStore
from shared.inbox import claim_event
from shared.outbox import Outbox, forget_account_events

SERVICE = "audit"


class AuditService:
    """The access trail."""

    def __init__(
        self, *, sessions: SessionFactory, outbox: Outbox, export_store: ExportStore
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.export_store = export_store

    async def record_access(self, *, event: Envelope[DataAccessed], consumer: str) -> bool:
        """Append an access to the account's chain (STAFF-ACCESS, PURPOSE); False if seen before."""
        access = event.data
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            repo = AuditRepository(session)
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
                resource_type=access.resource_type,
                resource_id=access.resource_id,
                accessed_at=access.accessed_at,
                previous_hash=head.entry_hash if head else GENESIS_HASH,
                entry_hash="",
            )
            entry.entry_hash = entry_hash(entry.previous_hash, entry.hashed_fields())
            session.add(entry)
        return True

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

    async def export_account(self, *, event: Envelope[ExportRequested], consumer: str) -> bool:
        """Write the account's access trail to the export store."""
        request = event.data
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            entries = await AuditRepository(session).entries(request.account_id)
            file = self.export_store.write_slice(
                export_key=request.export_key,
                service=SERVICE,
                record_type="data_access",
                records=[e.model_dump(mode="json", exclude={"id"}) for e in entries],
            )
            self.outbox.add(
                session,
                ExportSliceWritten(
                    account_id=request.account_id,
                    saga_id=request.saga_id,
                    service=SERVICE,
                    files=[file],
                ),
            )
        return True

    async def purge_account(self, *, event: Envelope[PurgeRequested], consumer: str) -> bool:
        """Delete the account's trail and confirm."""
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            repo = AuditRepository(session)
            await repo.lock_chain(event.data.account_id)
            deleted = await repo.delete_account(event.data.account_id)
            # Purged: its confirmation is not kept for replay, nor is anything else about it.
            await forget_account_events(session, account_id=event.data.account_id)
            self.outbox.add(
                session,
                PurgeCompleted(
                    account_id=event.data.account_id,
                    saga_id=event.data.saga_id,
                    service=SERVICE,
                    rows_deleted=deleted,
                ),
                replayable=False,
            )
        return True
