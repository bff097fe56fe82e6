"""Notifications' use cases: queue an email with its cause, send it once that is committed."""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from email import policy
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from opentelemetry import metrics
from sqlalchemy import and_, delete, or_, true, update
from sqlalchemy.dialects.postgresql import insert
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
    ReminderState,
    due_stage,
    header_value,
    in_quiet_hours,
    is_permanent,
    message_id_for,
    reminder_offsets,
    retry_delay,
)
from notifications.mailer import SmtpMailer
from notifications.messages import (
    Look,
    Reminder,
    certificate_message,
    credit_note_message,
    details_changed_message,
    export_message,
    invitation_message,
    invoice_message,
    new_device_message,
    receipt_message,
    reminder_message,
    statement_message,
)
from notifications.models import (
    AccountMailSettings,
    BouncedAddress,
    CertificateRecipient,
    OutgoingEmail,
    ReminderInvoice,
    ReminderSent,
)
from notifications.rendering import RenderedEmail, Renderer, resolve_zone
from notifications.settings import NotificationsSettings
from shared.contracts import (
    AccountMailSettingsChanged,
    AccountPurged,
    AccountTerminated,
    CreditNoteIssued,
    DetailsChanged,
    EmailStatusChanged,
    Envelope,
    ExportAssembled,
    ExportBundleChunk,
    ExportDelivered,
    InvoiceIssued,
    InvoicePaymentStatusChanged,
    InvoiceVoided,
    MailPresentation,
    NewDeviceSignedIn,
    PaymentReceived,
    QuietHours,
    ReminderSchedule,
    StatementIssued,
    UserInvited,
)
from shared.db import SessionFactory
from shared.errors import describe
from shared.export_store import ExportStore
from shared.pdf import PrintedDocument, render_pdf
from shared.unit_of_work import UnitsOfWork, Work

log = logging.getLogger(__name__)
# Reminder lag: minutes when all goes well, hours across quiet hours, days after an outage.
REMINDER_LAG_BUCKETS_S = (60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)

_WIRE = policy.compat32.clone(linesep="\r\n")


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message: its name, its application/* subtype, its bytes."""

    name: str
    subtype: str
    content: bytes


def _header(value: str) -> str:
    """A header value no input can break (header_value), RFC 2047-encoded when not ASCII."""
    safe = header_value(value)
    return safe if safe.isascii() else Header(safe, "utf-8").encode()


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        meter: metrics.Meter | None = None,
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.mailer = mailer
        self.export_store = export_store
        self.settings = settings
        self.clock = clock
        self.renderer = Renderer()
        # Sends under way: the consumer starts one and goes on while the server answers.
        self._slots = asyncio.Semaphore(settings.concurrent_sends)
        self._sending: set[asyncio.Task[bool]] = set()
        meter = meter or metrics.get_meter("quittance.notifications")
        self._reminder_lag = meter.create_histogram(
            "quittance.notifications.reminder.lag",
            unit="s",
            description="From the start of the account's day a reminder stage fell due to its"
            " email's queueing: the reminder interval, quiet hours and any outage.",
            explicit_bucket_boundaries_advisory=REMINDER_LAG_BUCKETS_S,
        )
        self._outcomes = meter.create_counter(
            "quittance.notifications.emails",
            unit="{email}",
            description="Emails by kind and outcome: sent, deferred (to be retried), bounced,"
            " suppressed (an address that bounced before), counted once committed.",
        )

    def _mime(
        self,
        *,
        message_id: str,
        recipient: str,
        rendered: RenderedEmail,
        attachments: Sequence[Attachment] = (),
    ) -> bytes:
        # The compat32 MIME classes: a third of the time of EmailMessage's header registry.
        body = MIMEMultipart("alternative")
        body.attach(MIMEText(rendered.text, "plain", "utf-8"))
        body.attach(MIMEText(rendered.html, "html", "utf-8"))
        message = body
        if attachments:
            message = MIMEMultipart("mixed")
            message.attach(body)
            for attachment in attachments:
                part = MIMEApplication(attachment.content, attachment.subtype)
                part.add_header("Content-Disposition", "attachment", filename=attachment.name)
                message.attach(part)
        # Header values pass through header_value: no input can add a header or break one.
        message["From"] = self.settings.sender
        message["To"] = _header(recipient)
        message["Subject"] = _header(rendered.subject)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"  # transactional, not a conversation
        return message.as_bytes(policy=_WIRE)

    def _queue(
        self,
        *,
        cause: UUID,
        account_id: UUID,
        kind: MessageKind,
        recipient: str,
        rendered: RenderedEmail,
        work: Work,
        attachments: Sequence[Attachment] = (),
        document_id: UUID | None = None,
        send_after_commit: bool = True,
    ) -> UUID:
        """Queue one message, in the unit of work of what caused it, to be sent once that
        commits (unless the caller sends a batch itself); its id. The cause (an event's id,
        or a reminder stage's) names the message: the same cause, the same id."""
        message_id = message_id_for(cause, self.settings.message_id_domain)
        email = OutgoingEmail(
            account_id=account_id,
            kind=kind,
            message_id=message_id,
            recipient=recipient,
            subject=rendered.subject,
            document_id=document_id,
            mime=self._mime(
                message_id=message_id,
                recipient=recipient,
                rendered=rendered,
                attachments=attachments,
            ),
        )
        work.session.add(email)
        if send_after_commit:
            work.after_commit(lambda: self.send_after_commit(email.id))
        return email.id

    async def _look(
        self, work: Work, account_id: UUID, snapshot: MailPresentation | None, name: str | None
    ) -> Look:
        """How the account's mail reads and whose name it carries: the event's snapshot when
        it has one, else the account's settings as billing last said, else the defaults."""
        if snapshot is not None and name:
            return Look(presentation=snapshot, account_name=name)  # no query on the hot path
        settings = await work.session.get(AccountMailSettings, account_id)
        if snapshot is None and settings is not None:
            snapshot = MailPresentation(
                locale=settings.locale, time_zone=settings.time_zone, logo_url=settings.logo_url
            )
        account_name = (
            name or (settings.account_name if settings is not None else "") or "Quittance"
        )
        return Look(presentation=snapshot or MailPresentation(), account_name=account_name)

    async def queue_invoice_email(self, *, event: Envelope[InvoiceIssued], work: Work) -> UUID:
        """Queue the invoice email to the customer, its PDF attached; note it for reminders."""
        invoice = event.data
        look = await self._look(work, invoice.account_id, invoice.presentation, invoice.seller_name)
        rendered = invoice_message(self.renderer, look, invoice)
        await work.session.exec(
            insert(ReminderInvoice)
            .values(
                invoice_id=invoice.invoice_id,
                account_id=invoice.account_id,
                number=invoice.number,
                customer_name=invoice.customer.name,
                customer_email=invoice.customer.email,
                currency=invoice.currency,
                total=invoice.total,
                credited=Decimal(0),
                paid=Decimal(0),
                due_date=invoice.due_date,
                state=ReminderState.OPEN,
            )
            .on_conflict_do_nothing()
        )
        return self._queue(
            cause=event.id,
            account_id=invoice.account_id,
            kind=MessageKind.INVOICE,
            recipient=invoice.customer.email,
            rendered=rendered,
            work=work,
            attachments=[await _pdf(f"{invoice.number}.pdf", invoice_document(invoice))],
            document_id=invoice.invoice_id,
        )

    async def queue_credit_note_email(
        self, *, event: Envelope[CreditNoteIssued], work: Work
    ) -> UUID:
        """Queue the credit note email to the customer; a fully credited invoice is not
        reminded of any more."""
        note = event.data
        look = await self._look(work, note.account_id, note.presentation, note.seller_name)
        rendered = credit_note_message(self.renderer, look, note)
        reminded = await _locked_reminder(work, note.invoice_id)
        if reminded is not None:
            reminded.credited += note.total
            if reminded.total - reminded.credited <= 0:
                await self._stop_reminders(work, reminded, ReminderState.CREDITED)
            work.session.add(reminded)
        return self._queue(
            cause=event.id,
            account_id=note.account_id,
            kind=MessageKind.CREDIT_NOTE,
            recipient=note.customer.email,
            rendered=rendered,
            work=work,
            attachments=[await _pdf(f"{note.number}.pdf", credit_note_document(note))],
            document_id=note.credit_note_id,
        )

    async def queue_statement_email(self, *, event: Envelope[StatementIssued], work: Work) -> UUID:
        """Queue the monthly statement to the customer, its PDF attached."""
        statement = event.data
        look = await self._look(
            work, statement.account_id, statement.presentation, statement.seller_name
        )
        rendered = statement_message(self.renderer, look, statement)
        name_of_file = f"statement-{statement.period_start}-{statement.period_end}.pdf"
        return self._queue(
            cause=event.id,
            account_id=statement.account_id,
            kind=MessageKind.STATEMENT,
            recipient=statement.customer.email,
            rendered=rendered,
            work=work,
            attachments=[await _pdf(name_of_file, statement_document(statement))],
        )

    async def queue_payment_receipt(self, *, event: Envelope[PaymentReceived], work: Work) -> UUID:
        """Queue the receipt of a payment to the customer; a settled invoice is not reminded of."""
        payment = event.data
        look = await self._look(work, payment.account_id, payment.presentation, payment.seller_name)
        rendered = receipt_message(self.renderer, look, payment)
        reminded = await _locked_reminder(work, payment.invoice_id)
        if reminded is not None:
            reminded.paid += payment.applied_amount
            if payment.amount_due <= 0:
                await self._stop_reminders(work, reminded, ReminderState.PAID)
            work.session.add(reminded)
        return self._queue(
            cause=event.id,
            account_id=payment.account_id,
            kind=MessageKind.PAYMENT_RECEIPT,
            recipient=payment.customer.email,
            rendered=rendered,
            work=work,
            document_id=payment.payment_id,
        )

    async def note_payment_status(
        self, *, event: Envelope[InvoicePaymentStatusChanged], work: Work
    ) -> None:
        """A paid invoice is not reminded of; one owed again after a refund is, again."""
        change = event.data
        reminded = await _locked_reminder(work, change.invoice_id)
        if reminded is None:
            return
        if change.status == "paid":
            await self._stop_reminders(work, reminded, ReminderState.PAID)
        elif reminded.state is ReminderState.PAID:
            reminded.state = ReminderState.OPEN
            reminded.paid = change.amount_paid
        work.session.add(reminded)

    async def note_voided(self, *, event: Envelope[InvoiceVoided], work: Work) -> None:
        """A void invoice is not reminded of."""
        reminded = await _locked_reminder(work, event.data.invoice_id)
        if reminded is not None:
            await self._stop_reminders(work, reminded, ReminderState.VOIDED)
            work.session.add(reminded)

    async def note_terminated(self, *, event: Envelope[AccountTerminated], work: Work) -> None:
        """A terminated account's customers are reminded of nothing more, from now on; where
        its purge certificate goes is noted."""
        account_id = event.data.account_id
        await self._note_certificate_recipient(work, event.data)
        await self._note_settings(work, account_id, terminated=True)
        await work.session.exec(
            update(ReminderInvoice)
            .where(col(ReminderInvoice.account_id) == account_id)
            .where(col(ReminderInvoice.state) == ReminderState.OPEN)
            .values(state=ReminderState.TERMINATED)
        )
        await self._cancel_queued(
            work,
            col(OutgoingEmail.account_id) == account_id,
            col(OutgoingEmail.kind) == MessageKind.PAYMENT_REMINDER,
        )

    async def _note_certificate_recipient(self, work: Work, terminated: AccountTerminated) -> None:
        """Note where the purge certificate goes: the owner's address is readable now, and
        not once the account's key is destroyed. The row outlives the purge until it is sent."""
        settings = await work.session.get(AccountMailSettings, terminated.account_id)
        values = {
            "address": terminated.owner_email,
            "account_name": terminated.account_name,
            "locale": settings.locale if settings is not None else "en",
            "time_zone": settings.time_zone if settings is not None else "UTC",
            "noted_at": self.clock(),
        }
        await work.session.exec(
            insert(CertificateRecipient)
            .values(account_id=terminated.account_id, **values)
            .on_conflict_do_update(index_elements=["account_id"], set_=values)
        )

    async def queue_certificate_email(
        self, *, event: Envelope[AccountPurged], work: Work
    ) -> UUID | None:
        """Queue the signed purge certificate to the owner noted at termination, if any."""
        purged = event.data
        if purged.certificate is None or purged.signature is None:
            log.warning("a purge certificate without its signature; nothing to send")
            return None
        recipient = await work.session.get(CertificateRecipient, purged.account_id)
        if recipient is None:
            log.warning("no address noted for the purge certificate %s", purged.certificate_id)
            return None
        look = Look(
            presentation=MailPresentation(locale=recipient.locale, time_zone=recipient.time_zone),
            account_name=recipient.account_name,
        )
        rendered = certificate_message(
            self.renderer, look, purged, self.settings.certificate_key_url
        )
        return self._queue(
            cause=event.id,
            account_id=purged.account_id,
            kind=MessageKind.PURGE_CERTIFICATE,
            recipient=recipient.address,
            rendered=rendered,
            work=work,
            attachments=[
                Attachment("certificate.json", "json", purged.certificate.encode()),
                Attachment("certificate.sig", "octet-stream", base64.b64decode(purged.signature)),
            ],
            document_id=purged.certificate_id,
        )

    async def note_mail_settings(
        self, *, event: Envelope[AccountMailSettingsChanged], work: Work
    ) -> None:
        """Keep the account's mail settings; an older change never overrides a newer one."""
        change = event.data
        values = {
            "account_name": change.account_name,
            "locale": change.presentation.locale,
            "time_zone": change.presentation.time_zone,
            "logo_url": change.presentation.logo_url,
            "reminders": None if change.reminders is None else change.reminders.model_dump(),
            "quiet_start": None if change.quiet_hours is None else change.quiet_hours.start,
            "quiet_end": None if change.quiet_hours is None else change.quiet_hours.end,
            "changed_at": change.changed_at,
        }
        statement = insert(AccountMailSettings).values(
            account_id=change.account_id, terminated=False, **values
        )
        await work.session.exec(
            statement.on_conflict_do_update(
                index_elements=["account_id"],
                set_=values,
                where=col(AccountMailSettings.changed_at) < statement.excluded.changed_at,
            )
        )

    async def _note_settings(self, work: Work, account_id: UUID, *, terminated: bool) -> None:
        await work.session.exec(
            insert(AccountMailSettings)
            .values(
                account_id=account_id,
                account_name="",
                locale="en",
                time_zone="UTC",
                terminated=terminated,
                changed_at=datetime.fromtimestamp(0, UTC),
            )
            .on_conflict_do_update(index_elements=["account_id"], set_={"terminated": terminated})
        )

    async def _stop_reminders(
        self, work: Work, reminded: ReminderInvoice, why: ReminderState
    ) -> None:
        """No more reminders of this invoice, and none still queued goes out."""
        if reminded.state is ReminderState.OPEN:
            reminded.state = why
        await self._cancel_queued(
            work,
            col(OutgoingEmail.document_id) == reminded.invoice_id,
            col(OutgoingEmail.kind) == MessageKind.PAYMENT_REMINDER,
        )

    async def _cancel_queued(self, work: Work, *conditions: Any) -> None:
        cancelled = (
            await work.session.exec(
                update(OutgoingEmail)
                .where(col(OutgoingEmail.status) == EmailStatus.QUEUED, *conditions)
                .values(status=EmailStatus.CANCELLED, mime=None, next_attempt_at=None)
                .returning(OutgoingEmail)
            )
        ).all()
        for (email,) in cancelled:
            self._announce(work, email, reason="what it was about ended")

    async def queue_invitation_email(self, *, event: Envelope[UserInvited], work: Work) -> UUID:
        """Queue an invitation to the invited person."""
        invited = event.data
        look = await self._look(
            work, invited.account_id, invited.presentation, invited.account_name
        )
        rendered = invitation_message(self.renderer, look, invited, self.settings.invitation_url)
        return self._queue(
            cause=event.id,
            account_id=invited.account_id,
            kind=MessageKind.INVITATION,
            recipient=invited.email,
            rendered=rendered,
            work=work,
        )

    async def queue_new_device_email(
        self, *, event: Envelope[NewDeviceSignedIn], work: Work
    ) -> UUID:
        """Queue the security notice of a sign-in from a new device to the user."""
        signed_in = event.data
        look = await self._look(work, signed_in.account_id, None, None)
        rendered = new_device_message(self.renderer, look, signed_in)
        return self._queue(
            cause=event.id,
            account_id=signed_in.account_id,
            kind=MessageKind.SECURITY_NOTICE,
            recipient=signed_in.email,
            rendered=rendered,
            work=work,
        )

    async def queue_change_notice(
        self, *, event: Envelope[DetailsChanged], work: Work
    ) -> UUID | None:
        """Queue the notice of corrected details to whom billing says must be told, if anyone."""
        change = event.data
        if change.notice_email is None:
            return None
        look = await self._look(work, change.account_id, None, None)
        rendered = details_changed_message(self.renderer, look, change)
        return self._queue(
            cause=event.id,
            account_id=change.account_id,
            kind=MessageKind.SECURITY_NOTICE,
            recipient=change.notice_email,
            rendered=rendered,
            work=work,
        )

    async def queue_export_email(self, *, event: Envelope[ExportAssembled], work: Work) -> UUID:
        """Queue the email that will carry the bundle, or its link; one per saga, however
        often asked."""
        export = event.data
        attached = export.download_url is None
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
                if attached:
                    existing.attachment_transfer_id = export.transfer_id
                    existing.attachment_chunks = export.chunks
                existing.attachment_sha256 = export.sha256
                work.session.add(existing)
                work.after_commit(lambda: self.send_after_commit(existing.id))
            return existing.id
        look = await self._look(work, export.account_id, None, export.account_name)
        rendered = export_message(self.renderer, look, export)
        message_id = message_id_for(event.id, self.settings.message_id_domain)
        email = OutgoingEmail(
            account_id=export.account_id,
            kind=MessageKind.ACCOUNT_EXPORT,
            message_id=message_id,
            recipient=export.recipient_email,
            subject=rendered.subject,
            saga_id=export.saga_id,
            attachment_transfer_id=export.transfer_id if attached else None,
            attachment_chunks=export.chunks if attached else None,
            attachment_name=export.file_name if attached else None,
            attachment_sha256=export.sha256,
            mime=self._mime(
                message_id=message_id, recipient=export.recipient_email, rendered=rendered
            ),
        )
        work.session.add(email)
        work.after_commit(lambda: self.send_after_commit(email.id))
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
            work.after_commit(lambda: self.send_after_commit(waiting))

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

    def _announce(self, work: Work, email: OutgoingEmail, *, reason: str | None = None) -> None:
        """Tell billing's delivery log where the email stands (statuses that are an outcome),
        and count the outcome once it is committed."""
        status = "deferred" if email.status is EmailStatus.QUEUED else email.status.value
        outcome = {"kind": email.kind.value, "outcome": status}

        async def count() -> None:
            self._outcomes.add(1, outcome)

        work.after_commit(count)
        if email.kind is MessageKind.PURGE_CERTIFICATE:
            return  # billing keeps nothing of a purged account, and its key is gone
        work.emit(
            EmailStatusChanged(
                account_id=email.account_id,
                email_id=email.id,
                message_id=email.message_id,
                kind=email.kind.value,
                recipient=email.recipient,
                status=status,
                attempts=email.attempts,
                reason=reason,
                document_id=email.document_id,
                changed_at=self.clock(),
            )
        )

    async def send_after_commit(self, email_id: UUID) -> None:
        """Start sending a committed email; returns once a sending slot is free, so the
        consumer goes on while the server answers and slows to its pace when all are taken.
        A send lost with the process is the sweeper's to retry."""
        await self._slots.acquire()
        task = asyncio.create_task(self._send_in_slot(email_id))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_in_slot(self, email_id: UUID) -> bool:
        try:
            return await self.deliver(email_id)
        except Exception:
            log.exception("sending email %s failed; the sweeper tries again", email_id)
            return False
        finally:
            self._slots.release()

    async def _send_all(self, email_ids: list[UUID]) -> int:
        """Send these, as many at once as there are slots; how many went."""

        async def one(email_id: UUID) -> bool:
            await self._slots.acquire()
            return await self._send_in_slot(email_id)

        return sum(await asyncio.gather(*(one(email_id) for email_id in email_ids)))

    async def run_sending(self) -> None:
        """Until stopped; then gives the sends under way the SMTP timeout to finish."""
        try:
            await asyncio.Event().wait()
        finally:
            if self._sending:
                await asyncio.wait(set(self._sending), timeout=self.settings.smtp.timeout_s)

    async def deliver(self, email_id: UUID) -> bool:
        """Send one queued email under a row lock; False if it is not sent now (sent or being
        sent elsewhere, not due, refused, or its attachment still arriving)."""
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
            now = self.clock()
            if email.next_attempt_at is not None and email.next_attempt_at > now:
                return False  # a retry waits for its time
            bounced = await session.get(BouncedAddress, (email.account_id, email.recipient.lower()))
            if bounced is not None and email.kind is not MessageKind.ACCOUNT_EXPORT:
                # The address refused mail for good before: nothing more goes to it until the
                # account corrects it (the export is the exception: the saga must try).
                self._leave_queue(email, EmailStatus.SUPPRESSED)
                session.add(email)
                self._announce(work, email, reason=bounced.reason)
                return False
            try:
                if not await self._send(email):
                    return False
            except Exception as exc:
                email.attempts += 1
                email.last_error = describe(exc)
                code = smtp_code(exc)
                delay = None if is_permanent(code) else retry_delay(email.attempts)
                if delay is None:
                    self._leave_queue(email, EmailStatus.BOUNCED)
                    if email.kind is MessageKind.PURGE_CERTIFICATE:
                        # Not deliverable, for good: the address is not kept for another try.
                        log.error("the purge certificate %s could not be delivered", email.id)
                        await self._forget_certificate_delivery(work, email)
                        return False
                    if is_permanent(code):
                        await session.exec(
                            insert(BouncedAddress)
                            .values(
                                account_id=email.account_id,
                                address=email.recipient.lower(),
                                reason=f"SMTP {code}",
                                bounced_at=now,
                            )
                            .on_conflict_do_nothing()
                        )
                else:
                    email.next_attempt_at = now + delay
                session.add(email)
                self._announce(work, email, reason=f"SMTP {code}" if code else type(exc).__name__)
                # The server's text may quote the address: the log keeps only the kind.
                log.warning("email %s not accepted: %s", email_id, describe(exc))
                return False
            email.status = EmailStatus.SENT
            email.sent_at = now
            email.attempts += 1
            email.mime = None  # minimisation: the body is not kept once delivered
            email.next_attempt_at = None
            session.add(email)
            self._announce(work, email)
            if email.kind is MessageKind.PURGE_CERTIFICATE:
                await self._forget_certificate_delivery(work, email)
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

    @staticmethod
    async def _forget_certificate_delivery(work: Work, email: OutgoingEmail) -> None:
        """The last of a purged account: its certificate's message and address go."""
        await work.session.delete(email)
        await work.session.exec(
            delete(CertificateRecipient).where(
                col(CertificateRecipient.account_id) == email.account_id
            )
        )

    @staticmethod
    def _leave_queue(email: OutgoingEmail, status: EmailStatus) -> None:
        email.status = status
        email.mime = None  # minimisation: a message that will not go is not kept either
        email.next_attempt_at = None

    async def deliver_due(self) -> int:
        """Send queued emails whose retry is due, or whose first attempt failed or was lost."""
        now = self.clock()
        lost = now - timedelta(seconds=self.settings.resend_after_s)
        async with self.sessions() as session:
            ids = (
                await session.exec(
                    select(OutgoingEmail.id)
                    .where(OutgoingEmail.status == EmailStatus.QUEUED)
                    .where(
                        or_(
                            col(OutgoingEmail.next_attempt_at) <= now,
                            and_(
                                col(OutgoingEmail.next_attempt_at).is_(None),
                                col(OutgoingEmail.created_at) < lost,
                            ),
                        )
                    )
                    .limit(100)
                )
            ).all()
        return await self._send_all(list(ids))

    async def send_due_reminders(self, *, batch: int = 200) -> int:
        """Queue and send each open invoice's latest due reminder stage, once (the stage's row
        is unique), outside the account's quiet hours; the number queued."""
        queued: list[UUID] = []
        after: UUID | None = None
        while True:
            async with self.units() as work:
                now = self.clock()
                rows = (
                    await work.session.exec(
                        select(ReminderInvoice, AccountMailSettings)
                        .join(
                            AccountMailSettings,
                            col(AccountMailSettings.account_id) == ReminderInvoice.account_id,
                        )
                        .where(
                            ReminderInvoice.state == ReminderState.OPEN,
                            col(AccountMailSettings.reminders).is_not(None),
                            col(AccountMailSettings.terminated).is_(False),
                            # Nothing can be due for an invoice further off than the earliest stage.
                            col(ReminderInvoice.due_date) <= (now + timedelta(days=92)).date(),
                            col(ReminderInvoice.invoice_id) > after if after else true(),
                        )
                        .order_by(col(ReminderInvoice.invoice_id))
                        .limit(batch)
                        .with_for_update(of=ReminderInvoice, skip_locked=True)
                    )
                ).all()
                for invoice, settings in rows:
                    email_id = await self._remind(work, invoice, settings, now)
                    if email_id is not None:
                        queued.append(email_id)
            if len(rows) < batch:
                break
            after = rows[-1][0].invoice_id
        await self._send_all(queued)
        return len(queued)

    async def _remind(
        self, work: Work, invoice: ReminderInvoice, settings: AccountMailSettings, now: datetime
    ) -> UUID | None:
        if settings.reminders is None:
            return None
        look = Look(
            presentation=MailPresentation(
                locale=settings.locale, time_zone=settings.time_zone, logo_url=settings.logo_url
            ),
            account_name=settings.account_name,
        )
        zone = resolve_zone(settings.time_zone)
        local = now.astimezone(zone)
        quiet = (
            QuietHours(start=settings.quiet_start, end=settings.quiet_end)
            if settings.quiet_start is not None and settings.quiet_end is not None
            else None
        )
        if in_quiet_hours(local.time(), quiet):
            return None
        schedule = ReminderSchedule.model_validate(settings.reminders)
        stage = due_stage(
            reminder_offsets(schedule), invoice.due_date, local.date(), invoice.last_stage
        )
        amount_due = invoice.total - invoice.credited - invoice.paid
        if stage is None or amount_due <= 0:
            return None
        rendered = reminder_message(
            self.renderer,
            look,
            Reminder(
                customer_name=invoice.customer_name,
                number=invoice.number,
                currency=invoice.currency,
                amount_due=amount_due,
                due_date=invoice.due_date,
                today=local.date(),
            ),
        )
        email_id = self._queue(
            cause=uuid5(invoice.invoice_id, f"reminder:{stage}"),
            account_id=invoice.account_id,
            kind=MessageKind.PAYMENT_REMINDER,
            recipient=invoice.customer_email,
            rendered=rendered,
            work=work,
            document_id=invoice.invoice_id,
            send_after_commit=False,  # the run sends its reminders together, then returns
        )
        work.session.add(
            ReminderSent(
                invoice_id=invoice.invoice_id,
                stage=stage,
                account_id=invoice.account_id,
                email_id=email_id,
                sent_at=now,
            )
        )
        invoice.last_stage = stage
        work.session.add(invoice)
        became_due = datetime.combine(invoice.due_date + timedelta(days=stage), time.min, zone)
        lag = max((now - became_due).total_seconds(), 0.0)

        async def measure() -> None:
            self._reminder_lag.record(lag)

        work.after_commit(measure)
        return email_id

    async def run_sweeper(self) -> None:
        """Forever: retry queued email every sweep interval."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.deliver_due()
            except Exception:
                log.exception("email sweep failed")

    async def run_reminders(self) -> None:
        """Forever: send the reminders that fell due, every reminder interval."""
        while True:
            try:
                await self.send_due_reminders()
            except Exception:
                log.exception("reminder run failed; trying again next round")
            await asyncio.sleep(self.settings.reminder_interval_s)


def smtp_code(exc: BaseException) -> int | None:
    """The SMTP reply code of a refusal (aiosmtplib's or smtplib's), if the server gave one."""
    code = getattr(exc, "code", None) or getattr(exc, "smtp_code", None)
    if code is None and isinstance(getattr(exc, "recipients", None), dict):
        replies = list(exc.recipients.values())  # type: ignore[attr-defined]
        code = replies[0][0] if replies else None
    if code is None and getattr(exc, "recipients", None):
        refusals = exc.recipients  # type: ignore[attr-defined]
        code = getattr(refusals[0], "code", None) if isinstance(refusals, list) else None
    return code if isinstance(code, int) else None


async def _locked_reminder(work: Work, invoice_id: UUID) -> ReminderInvoice | None:
    return (
        await work.session.exec(
            select(ReminderInvoice)
            .where(ReminderInvoice.invoice_id == invoice_id)
            .with_for_update()
        )
    ).first()


def _chunk_key(saga_id: UUID, transfer_id: object, index: int) -> str:
    return f"{saga_id}/bundle/{transfer_id}/{index:06d}"


async def _pdf(name: str, document: PrintedDocument) -> Attachment:
    """The document as a PDF attachment, laid out off the event loop (it takes CPU)."""
    return Attachment(name, "pdf", await asyncio.to_thread(render_pdf, document))
