"""The delivery log: kept from notifications' events, read by the account's users."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from billing.auth.models import Principal
from billing.deliveries.models import EmailDelivery, EmailOutcome
from shared.contracts import EmailStatusChanged, Envelope
from shared.db import SessionFactory
from shared.unit_of_work import Work


async def record_delivery(event: Envelope[EmailStatusChanged], work: Work) -> None:
    """Keep an email's newest status: a status told later never replaces a newer one."""
    change = event.data
    values: dict[str, Any] = {
        "message_id": change.message_id,
        "kind": change.kind,
        "recipient": change.recipient,
        "status": change.status,
        "attempts": change.attempts,
        "reason": change.reason,
        "document_id": change.document_id,
        "changed_at": change.changed_at,
    }
    statement = insert(EmailDelivery).values(
        email_id=change.email_id, account_id=change.account_id, **values
    )
    await work.session.exec(
        statement.on_conflict_do_update(
            index_elements=["email_id"],
            set_=values,
            where=col(EmailDelivery.changed_at) <= statement.excluded.changed_at,
        )
    )


class DeliveryService:
    """The account's delivery log."""

    def __init__(self, *, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def list(
        self,
        *,
        principal: Principal,
        status: EmailOutcome | None,
        document_id: UUID | None,
        limit: int,
        offset: int,
    ) -> list[EmailDelivery]:
        """The account's emails, newest change first."""
        account_id = principal.require_user()
        query = select(EmailDelivery).where(EmailDelivery.account_id == account_id)
        if status is not None:
            query = query.where(EmailDelivery.status == status.value)
        if document_id is not None:
            query = query.where(EmailDelivery.document_id == document_id)
        query = query.order_by(col(EmailDelivery.changed_at).desc(), col(EmailDelivery.email_id))
        async with self.sessions() as session:
            return list((await session.exec(query.limit(limit).offset(offset))).all())
