"""Notifications' Kafka subscribers."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from notifications.services import NotificationsService
from shared.contracts import Envelope, ExportAssembled, ExportRequested, InvoiceIssued, PurgeRequested
from shared.kafka import subscriber_options
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

SERVICE = "notifications"


def create_router(*, service: NotificationsService, runtime: ServiceRuntime[ServiceSettings]) -> KafkaRouter:
    """Subscribe notifications to invoices, export bundles, and the saga's requests."""
    router = KafkaRouter()
    kafka = runtime.settings.kafka
    options = subscriber_options(group_id=SERVICE)

    @router.subscriber(kafka.topic("invoice.issued"), **options)
    async def on_invoice_issued(event: Envelope[InvoiceIssued]) -> None:
        """Email the invoice to the customer, once."""
        email_id = await service.queue_invoice_email(event=event, consumer="notifications.on_invoice_issued")
        if email_id is None:
            runtime.count_duplicate("notifications.on_invoice_issued")
            return
        await service.deliver(email_id)  # a failure leaves it queued for the sweeper

    @router.subscriber(kafka.topic("export.assembled"), **options)
    async def on_export_assembled(event: Envelope[ExportAssembled]) -> None:
        """Email the export bundle to the account owner."""
        email_id = await service.queue_export_email(event=event, consumer="notifications.on_export_assembled")
        if email_id is None:
            runtime.count_duplicate("notifications.on_export_assembled")
            return
        await service.deliver(email_id)

    @router.subscriber(kafka.topic("export.requested"), **options)
    async def on_export_requested(event: Envelope[ExportRequested]) -> None:
        """Write the account's email records to the export store."""
        if not await service.export_account(event=event, consumer="notifications.on_export_requested"):
            runtime.count_duplicate("notifications.on_export_requested")

    @router.subscriber(kafka.topic("purge.requested"), **options)
    async def on_purge_requested(event: Envelope[PurgeRequested]) -> None:
        """Delete the account's email records and confirm."""
        if not await service.purge_account(event=event, consumer="notifications.on_purge_requested"):
            runtime.count_duplicate("notifications.on_purge_requested")

    return router
