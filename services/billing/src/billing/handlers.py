"""Billing's event handlers: its steps of the termination saga."""

from __future__ import annotations

from billing.services import BillingService
from shared.contracts import Envelope, ExportRequested, PurgeRequested
from shared.routing import EventRoutes
from shared.telemetry import Telemetry


def create_routes(*, service: BillingService, telemetry: Telemetry) -> EventRoutes:
    """What billing does with the events it consumes."""
    routes = EventRoutes("billing", telemetry)

    @routes.on(ExportRequested)
    async def on_export_requested(event: Envelope[ExportRequested], consumer: str) -> bool:
        """Write billing's slice of the account to the export store."""
        return await service.export_account(event=event, consumer=consumer)

    @routes.on(PurgeRequested)
    async def on_purge_requested(event: Envelope[PurgeRequested], consumer: str) -> bool:
        """Delete every row about the account and confirm."""
        return await service.purge_account(event=event, consumer=consumer)

    return routes
