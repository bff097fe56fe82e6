"""Audit's event handlers."""

from __future__ import annotations

from audit.services import AuditService
from shared.contracts import DataAccessed, Envelope, ExportRequested, PurgeRequested
from shared.routing import EventRoutes
from shared.telemetry import Telemetry


def create_routes(*, service: AuditService, telemetry: Telemetry) -> EventRoutes:
    """What audit does with the events it consumes."""
    routes = EventRoutes("audit", telemetry)

    @routes.on(DataAccessed)
    async def on_data_accessed(event: Envelope[DataAccessed], consumer: str) -> bool:
        """Append the access to the account's trail."""
        return await service.record_access(event=event, consumer=consumer)

    @routes.on(ExportRequested)
    async def on_export_requested(event: Envelope[ExportRequested], consumer: str) -> bool:
        """Write the account's trail to the export store."""
        return await service.export_account(event=event, consumer=consumer)

    @routes.on(PurgeRequested)
    async def on_purge_requested(event: Envelope[PurgeRequested], consumer: str) -> bool:
        """Delete the account's trail and confirm."""
        return await service.purge_account(event=event, consumer=consumer)

    return routes
