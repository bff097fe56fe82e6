"""Notifications' use cases: queue an email with its cause, send it once that is committed."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import delete, update
from sqlmodel import col, select

from notifications.domain import (
    EmailStatus,
    MessageKind,
    export_email,
    invoice_email,
    message_id_for,
)
from notifications.mailer import SmtpMailer
from notifications.models import OutgoingEmail
from notifications.settings import NotificationsSettings
from shared.contracts import (
    Envelope,
    ExportAssembled,
    ExportDelivered,
    ExportRequested,
    ExportSliceWritten,
    InvoiceIssued,
    PurgeCompleted,
    PurgeRequested,
)
from shared.db import SessionFactory, transaction
from shared.export_store import ExportStore
from shared.inbox import claim_event
from shared.outbox import Outbox, forget_account_events

SERVICE = "notifications"
log = logging.getLogger(__name__)


class NotificationsService:
    """Queues, sends, exports and purges email records."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        outbox: Outbox,
        mailer: SmtpMailer,
        export_store: ExportStore,
        settings: NotificationsSettings,
    ) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.mailer = mailer
        self.export_store = export_store
        self.settings = settings

    def _mime(
        self,
        *,
        message_id: str,
        recipient: str,
        subject: str,
        body: str,
        attachment: Path | None = None,
    ) -> bytes:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"  # transactional, not a conversation
        message.set_content(body)
        if attachment is not None:
            message.add_attachment(
                attachment.read_bytes(),
                maintype="application",
                subtype="zip",
                filename=attachment.name,
            )
        return bytes(message)

    async def queue_invoice_email(
        self, *, event: Envelope[InvoiceIssued], consumer: str
    ) -> UUID | None:
        """Queue the invoice email with the inbox claim; None if the event was handled before."""
        invoice = event.data
        subject, body = invoice_email(invoice)
        message_id = message_id_for(event.id, self.settings.message_id_domain)
        email = OutgoingEmail(
            account_id=invoice.account_id,
            kind=MessageKind.INVOICE,
            message_id=message_id,
            recipient=invoice.customer.email,
            subject=subject,
            mime=self._mime(
                message_id=message_id, recipient=invoice.customer.email, subject=subject, body=body
            ),
        )
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return None
            session.add(email)
        return email.id

    async def queue_export_email(
        self, *, event: Envelope[ExportAssembled], consumer: str
    ) -> UUID | None:
        """Queue the email that carries the export bundle to the account owner."""
        export = event.data
        subject, body = export_email(export)
        message_id = message_id_for(event.id, self.settings.message_id_domain)
        email = OutgoingEmail(
            account_id=export.account_id,
            kind=MessageKind.ACCOUNT_EXPORT,
            message_id=message_id,
            recipient=export.recipient_email,
            subject=subject,
            saga_id=export.saga_id,
            mime=self._mime(
                message_id=message_id,
                recipient=export.recipient_email,
                subject=subject,
                body=body,
                attachment=self.export_store.path(export.bundle_key),
            ),
        )
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return None
            session.add(email)
        return email.id

    async def deliver(self, email_id: UUID) -> bool:
        """Send one queued email under a row lock; False if it is sent or being sent elsewhere."""
        async with transaction(self.sessions) as session:
            email = (
                await session.exec(
                    select(OutgoingEmail)
                    .where(OutgoingEmail.id == email_id, OutgoingEmail.status == EmailStatus.QUEUED)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if email is None:
                return False
            assert email.mime is not None
            try:
                await self.mailer.send(
                    sender=self.settings.sender, recipient=email.recipient, mime=email.mime
                )
            except Exception as exc:
                await session.exec(
                    update(OutgoingEmail)
                    .where(col(OutgoingEmail.id) == email_id)
                    .values(attempts=OutgoingEmail.attempts + 1, last_error=str(exc)[:500])
                )
                log.warning("email %s not accepted yet: %s", email_id, exc)
                return False
            email.status = EmailStatus.SENT
            email.sent_at = datetime.now(UTC)
            email.attempts += 1
            email.mime = None  # minimisation: the body is not kept once delivered
            session.add(email)
            if email.kind is MessageKind.ACCOUNT_EXPORT and email.saga_id is not None:
                self.outbox.add(
                    session,
                    ExportDelivered(
                        account_id=email.account_id,
                        saga_id=email.saga_id,
                        message_id=email.message_id,
                    ),
                )
        return True

    async def deliver_due(self) -> int:
        """Retry queued emails old enough that their first attempt failed or was lost."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.resend_after_s)
        async with self.sessions() as session:
            ids = (
                await session.exec(
                    select(OutgoingEmail.id)
                    .where(
                        OutgoingEmail.status == EmailStatus.QUEUED,
                        col(OutgoingEmail.created_at) < cutoff,
                    )
                    .limit(100)
                )
            ).all()
        sent = 0
        for email_id in ids:
            sent += await self.deliver(email_id)
        return sent

    async def run_sweeper(self) -> None:
        """Forever: retry queued email every sweep interval."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.deliver_due()
            except Exception:
                log.exception("email sweep failed")

    async def export_account(self, *, event: Envelope[ExportRequested], consumer: str) -> bool:
        """Write the account's email records (not their bodies) to the export store."""
        request = event.data
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            emails = (
                await session.exec(
                    select(OutgoingEmail).where(OutgoingEmail.account_id == request.account_id)
                )
            ).all()
            records: list[dict[str, Any]] = [
                e.model_dump(mode="json", exclude={"mime", "last_error"}) for e in emails
            ]
            file = self.export_store.write_slice(
                export_key=request.export_key, service=SERVICE, record_type="email", records=records
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
        """Delete every email record of the account and confirm."""
        async with transaction(self.sessions) as session:
            if not await claim_event(session, consumer=consumer, event_id=event.id):
                return False
            result = await session.exec(
                delete(OutgoingEmail).where(col(OutgoingEmail.account_id) == event.data.account_id)
            )
            # Purged: its confirmation is not kept for replay, nor is anything else about it.
            await forget_account_events(session, account_id=event.data.account_id)
            self.outbox.add(
                session,
                PurgeCompleted(
                    account_id=event.data.account_id,
                    saga_id=event.data.saga_id,
                    service=SERVICE,
                    rows_deleted=int(result.rowcount or 0),
                ),
                replayable=False,
            )
        return True
