"""Retention's event handlers: each moves a termination saga one step."""

from __future__ import annotations

from retention.services import RetentionService
from shared.contracts import (
    AccountTerminated,
    Envelope,
    ExportDelivered,
    ExportSliceWritten,
    PurgeCompleted,
)
from shared.routing import EventRoutes
from shared.telemetry import Telemetry


def create_routes(*, service: RetentionService, telemetry: Telemetry) -> EventRoutes:
    """What retention does with the events it consumes."""
    routes = EventRoutes("retention", telemetry)

    @routes.on(AccountTerminated)
    async def on_account_terminated(event: Envelope[AccountTerminated], consumer: str) -> bool:
        """Start the termination saga."""
        return await service.start_termination(event=event, consumer=consumer)

    @routes.on(ExportSliceWritten)
    async def on_export_slice_written(event: Envelope[ExportSliceWritten], consumer: str) -> bool:
        """Collect a slice; assemble and send the bundle when all are in."""
        return await service.record_slice(event=event, consumer=consumer)

    @routes.on(ExportDelivered)
    async def on_export_delivered(event: Envelope[ExportDelivered], consumer: str) -> bool:
        """Start the purge once the customer was sent their export."""
        return await service.record_delivery(event=event, consumer=consumer)

    @routes.on(PurgeCompleted)
    async def on_purge_completed(event: Envelope[PurgeCompleted], consumer: str) -> bool:
        """Collect a purge confirmation; certify when all are in."""
        return await service.record_purge(event=event, consumer=consumer)

    return routes
