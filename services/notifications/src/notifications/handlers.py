"""Notifications' event handlers."""

from __future__ import annotations

from notifications.services import NotificationsService
from shared.contracts import (
    AccountMailSettingsChanged,
    AccountPurged,
    AccountTerminated,
    CreditNoteIssued,
    DetailsChanged,
    Envelope,
    ExportAssembled,
    ExportBundleChunk,
    InvoiceIssued,
    InvoicePaymentStatusChanged,
    InvoiceVoided,
    NewDeviceSignedIn,
    PaymentReceived,
    StatementIssued,
    UserInvited,
)
from shared.participant import Participant
from shared.routing import EventRoutes
from shared.telemetry import Telemetry
from shared.unit_of_work import Work


def create_routes(
    *, service: NotificationsService, participant: Participant, telemetry: Telemetry
) -> EventRoutes:
    """What notifications does with the events it consumes."""
    routes = EventRoutes("notifications", telemetry)

    @routes.on(InvoiceIssued)
    async def on_invoice_issued(event: Envelope[InvoiceIssued], work: Work) -> None:
        """Queue the invoice email, once; sent once that commits."""
        await service.queue_invoice_email(event=event, work=work)

    @routes.on(CreditNoteIssued)
    async def on_credit_note_issued(event: Envelope[CreditNoteIssued], work: Work) -> None:
        """Queue the credit note email, once; sent once that commits."""
        await service.queue_credit_note_email(event=event, work=work)

    @routes.on(StatementIssued)
    async def on_statement_issued(event: Envelope[StatementIssued], work: Work) -> None:
        """Queue the monthly statement, once; sent once that commits."""
        await service.queue_statement_email(event=event, work=work)

    @routes.on(PaymentReceived)
    async def on_payment_received(event: Envelope[PaymentReceived], work: Work) -> None:
        """Queue the receipt, once; a settled invoice's reminders stop."""
        await service.queue_payment_receipt(event=event, work=work)

    @routes.on(InvoicePaymentStatusChanged)
    async def on_payment_status_changed(
        event: Envelope[InvoicePaymentStatusChanged], work: Work
    ) -> None:
        """A paid invoice's reminders stop; one owed again after a refund resumes them."""
        await service.note_payment_status(event=event, work=work)

    @routes.on(InvoiceVoided)
    async def on_invoice_voided(event: Envelope[InvoiceVoided], work: Work) -> None:
        """A void invoice's reminders stop, queued ones included."""
        await service.note_voided(event=event, work=work)

    @routes.on(AccountTerminated)
    async def on_account_terminated(event: Envelope[AccountTerminated], work: Work) -> None:
        """A terminated account's reminders stop at once (the saga does the rest)."""
        await service.note_terminated(event=event, work=work)

    @routes.on(AccountMailSettingsChanged)
    async def on_mail_settings_changed(
        event: Envelope[AccountMailSettingsChanged], work: Work
    ) -> None:
        """Keep how the account's mail reads and when its reminders go."""
        await service.note_mail_settings(event=event, work=work)

    @routes.on(UserInvited)
    async def on_user_invited(event: Envelope[UserInvited], work: Work) -> None:
        """Queue the invitation, once; sent once that commits."""
        await service.queue_invitation_email(event=event, work=work)

    @routes.on(NewDeviceSignedIn)
    async def on_new_device_signed_in(event: Envelope[NewDeviceSignedIn], work: Work) -> None:
        """Queue the security notice, once; sent once that commits."""
        await service.queue_new_device_email(event=event, work=work)

    @routes.on(DetailsChanged)
    async def on_details_changed(event: Envelope[DetailsChanged], work: Work) -> None:
        """Queue the change notice, once, when someone must be told of the change."""
        await service.queue_change_notice(event=event, work=work)

    @routes.on(ExportAssembled)
    async def on_export_assembled(event: Envelope[ExportAssembled], work: Work) -> None:
        """Queue the email that carries the export bundle to the account owner."""
        await service.queue_export_email(event=event, work=work)

    @routes.on(AccountPurged)
    async def on_account_purged(event: Envelope[AccountPurged], work: Work) -> None:
        """Send the signed purge certificate to the owner; then their address goes too."""
        await service.queue_certificate_email(event=event, work=work)

    @routes.on(ExportBundleChunk)
    async def on_export_bundle_chunk(event: Envelope[ExportBundleChunk], work: Work) -> None:
        """Keep a piece of the export bundle."""
        await service.receive_bundle_chunk(chunk=event.data, work=work)

    participant.register(routes)
    return routes
