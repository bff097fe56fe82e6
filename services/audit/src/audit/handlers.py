"""Audit's event handlers."""

from __future__ import annotations

from audit.services import AuditService
from shared.contracts import DataAccessed, Envelope, ExportRequested, PurgeRequested
from shared.routing import EventRoutes
from shared.telemetry import Telemetry
from shared.unit_of_work import Work


def create_routes(*, service: AuditService, telemetry: Telemetry) -> EventRoutes:
    """What audit does with the events it consumes."""
    routes = EventRoutes("audit", telemetry)

    @routes.on(DataAccessed)
    async def on_data_accessed(event: Envelope[DataAccessed], work: Work) -> None:
        """Append the access to the account's trail."""
        await service.record_access(event=event, work=work)

    @routes.on(ExportRequested)
    async def on_export_requested(event: Envelope[ExportRequested], work: Work) -> None:
        """Write the account's trail to the export store."""
        await service.export_account(request=event.data, work=work)

    @routes.on(PurgeRequested)
    async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
        """Delete the account's trail and confirm."""
        await service.purge_account(request=event.data, work=work)

    return routes
