"""Notifications' event handlers."""

from __future__ import annotations

from notifications.services import NotificationsService
from shared.contracts import (
    Envelope,
    ExportAssembled,
    ExportRequested,
    InvoiceIssued,
    PurgeRequested,
)
from shared.routing import EventRoutes
from shared.telemetry import Telemetry


def create_routes(*, service: NotificationsService, telemetry: Telemetry) -> EventRoutes:
    """What notifications does with the events it consumes."""
    routes = EventRoutes("notifications", telemetry)

    @routes.on(InvoiceIssued)
    async def on_invoice_issued(event: Envelope[InvoiceIssued], consumer: str) -> bool:
        """Email the invoice to the customer, once."""
        email_id = await service.queue_invoice_email(event=event, consumer=consumer)
        if email_id is None:
            return False
        await service.deliver(email_id)  # if the server refuses, the sweeper retries
        return True

    @routes.on(ExportAssembled)
    async def on_export_assembled(event: Envelope[ExportAssembled], consumer: str) -> bool:
        """Email the export bundle to the account owner."""
        email_id = await service.queue_export_email(event=event, consumer=consumer)
        if email_id is None:
            return False
        await service.deliver(email_id)
        return True

    @routes.on(ExportRequested)
    async def on_export_requested(event: Envelope[ExportRequested], consumer: str) -> bool:
        """Write the account's email records to the export store."""
        return await service.export_account(event=event, consumer=consumer)

    @routes.on(PurgeRequested)
    async def on_purge_requested(event: Envelope[PurgeRequested], consumer: str) -> bool:
        """Delete the account's email records and confirm."""
        return await service.purge_account(event=event, consumer=consumer)

    return routes
