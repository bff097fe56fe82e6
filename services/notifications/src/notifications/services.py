"""Notifications' use cases: queue an email with its cause, send it once that is committed."""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import update
from sqlmodel import col, select

from notifications.bulk_mail import compose_with_attachment, send_file
from notifications.documents import (
    credit_note_document,
    invoice_document,
    statement_document,
)
from notifications.domain import (
    EmailStatus,
    MessageKind,
    credit_note_email,
    details_changed_email,
    export_email,
    header_value,
    invitation_email,
    invoice_email,
    message_id_for,
    new_device_email,
    statement_email,
)
from notifications.mailer import SmtpMailer
from notifications.models import OutgoingEmail
from notifications.settings import NotificationsSettings
from shared.contracts import (
    CreditNoteIssued,
    DetailsChanged,
    Envelope,
    ExportAssembled,
    ExportBundleChunk,
    ExportDelivered,
    InvoiceIssued,
    NewDeviceSignedIn,
    StatementIssued,
    UserInvited,
)
from shared.db import SessionFactory
from shared.errors import describe
from shared.export_store import ExportStore
from shared.pdf import PrintedDocument, render_pdf
from shared.unit_of_work import UnitsOfWork, Work

log = logging.getLogger(__name__)


class NotificationsService:
    """Queues and sends email; the termination's export arrives in chunks and goes out once."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        units: UnitsOfWork,
        mailer: SmtpMailer,
        export_store: ExportStore,
        settings: NotificationsSettings,
    ) -> None:
        self.sessions = sessions
        self.units = units
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
        pdf: tuple[str, bytes] | None = None,
    ) -> bytes:
        message = EmailMessage()
        # Header values pass through header_value: no input can add a header or break one.
        message["From"] = self.settings.sender
        message["To"] = header_value(recipient)
        message["Subject"] = header_value(subject)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"  # transactional, not a conversation
        message.set_content(body)
        if pdf is not None:
            name, content = pdf
            message.add_attachment(content, maintype="application", subtype="pdf", filename=name)
        return bytes(message)

    def _queue(
        self,
        *,
        event: Envelope[Any],
        kind: MessageKind,
        recipient: str,
        composed: tuple[str, str],
        work: Work,
        pdf: tuple[str, bytes] | None = None,
    ) -> UUID:
        """Queue one message an event causes, in the handler's unit of work; its id."""
        subject, body = composed
        message_id = message_id_for(event.id, self.settings.message_id_domain)
        email = OutgoingEmail(
            account_id=event.data.account_id,
            kind=kind,
            message_id=message_id,
            recipient=recipient,
            subject=subject,
            mime=self._mime(
                message_id=message_id, recipient=recipient, subject=subject, body=body, pdf=pdf
            ),
        )
        work.session.add(email)
        return email.id

    async def queue_invoice_email(self, *, event: Envelope[InvoiceIssued], work: Work) -> UUID:
        """Queue the invoice email to the customer."""
        return self._queue(
            event=event,
            kind=MessageKind.INVOICE,
            recipient=event.data.customer.email,
            composed=invoice_email(event.data),
            work=work,
            pdf=(f"{event.data.number}.pdf", await _pdf(invoice_document(event.data))),
        )

    async def queue_credit_note_email(
        self, *, event: Envelope[CreditNoteIssued], work: Work
    ) -> UUID:
        """Queue the credit note email to the customer."""
        return self._queue(
            event=event,
            kind=MessageKind.CREDIT_NOTE,
            recipient=event.data.customer.email,
            composed=credit_note_email(event.data),
            work=work,
            pdf=(f"{event.data.number}.pdf", await _pdf(credit_note_document(event.data))),
        )

    async def queue_statement_email(self, *, event: Envelope[StatementIssued], work: Work) -> UUID:
        """Queue the monthly statement to the customer, its PDF attached."""
        name = f"statement-{event.data.period_start}-{event.data.period_end}.pdf"
        return self._queue(
            event=event,
            kind=MessageKind.STATEMENT,
            recipient=event.data.customer.email,
            composed=statement_email(event.data),
            work=work,
            pdf=(name, await _pdf(statement_document(event.data))),
        )

    async def queue_invitation_email(self, *, event: Envelope[UserInvited], work: Work) -> UUID:
        """Queue an invitation to the invited person."""
        return self._queue(
            event=event,
            kind=MessageKind.INVITATION,
            recipient=event.data.email,
            composed=invitation_email(event.data, self.settings.invitation_url),
            work=work,
        )

    async def queue_new_device_email(
        self, *, event: Envelope[NewDeviceSignedIn], work: Work
    ) -> UUID:
        """Queue the security notice of a sign-in from a new device to the user."""
        return self._queue(
            event=event,
            kind=MessageKind.SECURITY_NOTICE,
            recipient=event.data.email,
            composed=new_device_email(event.data),
            work=work,
        )

    async def queue_change_notice(
        self, *, event: Envelope[DetailsChanged], work: Work
    ) -> UUID | None:
        """Queue the notice of corrected details to whom billing says must be told, if anyone."""
        if event.data.notice_email is None:
            return None
        return self._queue(
            event=event,
            kind=MessageKind.SECURITY_NOTICE,
            recipient=event.data.notice_email,
            composed=details_changed_email(event.data),
            work=work,
        )

    async def queue_export_email(self, *, event: Envelope[ExportAssembled], work: Work) -> UUID:
        """Queue the email that will carry the bundle; one per saga, however often asked."""
        export = event.data
        existing = (
            await work.session.exec(
                select(OutgoingEmail)
                .where(
                    OutgoingEmail.saga_id == export.saga_id,
                    OutgoingEmail.kind == MessageKind.ACCOUNT_EXPORT,
                )
                .with_for_update()
            )
        ).first()
        if existing is not None:
            if existing.status is EmailStatus.SENT:
                # Retention asked again (it missed our confirmation): confirm, do not resend.
                work.emit(
                    ExportDelivered(
                        account_id=existing.account_id,
                        saga_id=export.saga_id,
                        message_id=existing.message_id,
                    )
                )
            else:
                existing.attachment_transfer_id = export.transfer_id
                existing.attachment_chunks = export.chunks
                existing.attachment_sha256 = export.sha256
                work.session.add(existing)
            return existing.id
        subject, body = export_email(export)
        message_id = message_id_for(event.id, self.settings.message_id_domain)
        email = OutgoingEmail(
            account_id=export.account_id,
            kind=MessageKind.ACCOUNT_EXPORT,
            message_id=message_id,
            recipient=export.recipient_email,
            subject=subject,
            saga_id=export.saga_id,
            attachment_transfer_id=export.transfer_id,
            attachment_chunks=export.chunks,
            attachment_name=export.file_name,
            attachment_sha256=export.sha256,
            mime=self._mime(
                message_id=message_id, recipient=export.recipient_email, subject=subject, body=body
            ),
        )
        work.session.add(email)
        return email.id

    async def receive_bundle_chunk(self, *, chunk: ExportBundleChunk, work: Work) -> None:
        """Keep a piece of the bundle; once the last one is in, the waiting email goes out."""
        key = _chunk_key(chunk.saga_id, chunk.transfer_id, chunk.index)
        await asyncio.to_thread(self.export_store.write_bytes, key, base64.b64decode(chunk.content))
        waiting = (
            await work.session.exec(
                select(OutgoingEmail.id).where(
                    OutgoingEmail.attachment_transfer_id == chunk.transfer_id,
                    OutgoingEmail.status == EmailStatus.QUEUED,
                )
            )
        ).first()
        if waiting is not None:
            work.after_commit(lambda: self.deliver(waiting))

    def _bundle_pieces(self, email: OutgoingEmail) -> list[str] | None:
        """The keys of the bundle's chunks, in order, once all are here; else None."""
        assert email.saga_id is not None
        assert email.attachment_chunks is not None
        folder = f"{email.saga_id}/bundle/{email.attachment_transfer_id}"
        if self.export_store.count(folder) < email.attachment_chunks:
            return None
        return [
            _chunk_key(email.saga_id, email.attachment_transfer_id, index)
            for index in range(email.attachment_chunks)
        ]

    def _read(self, keys: list[str]) -> Iterator[bytes]:
        for key in keys:
            with self.export_store.reader(key) as chunk:
                yield chunk.read()

    def _send_with_attachment(self, email: OutgoingEmail, keys: list[str]) -> bool:
        """Compose the message into a temporary file and stream it to the server (a thread)."""
        assert email.mime is not None
        with tempfile.NamedTemporaryFile(suffix=".eml") as composed:
            sha256 = compose_with_attachment(
                mime=email.mime,
                filename=email.attachment_name or "quittance-export.zip",
                pieces=self._read(keys),
                out=composed,
            )
            composed.flush()
            if sha256 != email.attachment_sha256:
                log.error("the export bundle of saga %s does not match its hash", email.saga_id)
                return False
            send_file(
                self.settings.smtp,
                sender=self.settings.sender,
                recipient=email.recipient,
                path=Path(composed.name),
            )
        return True

    async def _send(self, email: OutgoingEmail) -> bool:
        """Hand the email to the server; False while its attachment is still arriving."""
        assert email.mime is not None
        if email.attachment_transfer_id is None:
            await self.mailer.send(
                sender=self.settings.sender, recipient=email.recipient, mime=email.mime
            )
            return True
        keys = await asyncio.to_thread(self._bundle_pieces, email)
        if keys is None:
            return False  # the bundle is still arriving; its last chunk sends the email
        with self.mailer.span():
            return await asyncio.to_thread(self._send_with_attachment, email, keys)

    async def deliver(self, email_id: UUID) -> bool:
        """Send one queued email under a row lock; False if it is sent or being sent elsewhere."""
        async with self.units() as work:
            session = work.session
            email = (
                await session.exec(
                    select(OutgoingEmail)
                    .where(OutgoingEmail.id == email_id, OutgoingEmail.status == EmailStatus.QUEUED)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if email is None:
                return False
            try:
                if not await self._send(email):
                    return False
            except Exception as exc:
                await session.exec(
                    update(OutgoingEmail)
                    .where(col(OutgoingEmail.id) == email_id)
                    .values(attempts=OutgoingEmail.attempts + 1, last_error=describe(exc))
                )
                # The server's text may quote the address: the log keeps only the kind.
                log.warning("email %s not accepted yet: %s", email_id, describe(exc))
                return False
            email.status = EmailStatus.SENT
            email.sent_at = datetime.now(UTC)
            email.attempts += 1
            email.mime = None  # minimisation: the body is not kept once delivered
            session.add(email)
            if email.kind is MessageKind.ACCOUNT_EXPORT and email.saga_id is not None:
                # The bundle went out: notifications' copy goes once this commits.
                work.after_commit(self.export_store.removal(str(email.saga_id)))
                work.emit(
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


def _chunk_key(saga_id: UUID, transfer_id: object, index: int) -> str:
    return f"{saga_id}/bundle/{transfer_id}/{index:06d}"


async def _pdf(document: PrintedDocument) -> bytes:
    """The document laid out off the event loop (it takes CPU)."""
    return await asyncio.to_thread(render_pdf, document)
