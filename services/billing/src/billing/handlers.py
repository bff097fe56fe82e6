"""Billing's event handlers: its steps of the termination saga."""

from __future__ import annotations

from billing.services import BillingService
from shared.contracts import Envelope, ExportRequested, PurgeRequested
from shared.routing import EventRoutes
from shared.telemetry import Telemetry
from shared.unit_of_work import Work


def create_routes(*, service: BillingService, telemetry: Telemetry) -> EventRoutes:
    """What billing does with the events it consumes."""
    routes = EventRoutes("billing", telemetry)

    @routes.on(ExportRequested)
    async def on_export_requested(event: Envelope[ExportRequested], work: Work) -> None:
        """Write billing's slice of the account to the export store."""
        await service.export_account(request=event.data, work=work)

    @routes.on(PurgeRequested)
    async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
        """Delete every row about the account and confirm."""
        await service.purge_account(request=event.data, work=work)

    return routes
