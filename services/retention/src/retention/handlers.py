"""Retention's event handlers: each moves a termination saga one step, or a sweep."""

from __future__ import annotations

from retention.services import RetentionService
from retention.sweeps import SweepService
from shared.contracts import (
    AccountPlanChanged,
    AccountTerminated,
    Envelope,
    ExportDelivered,
    ExportSliceChunk,
    ExportSliceWritten,
    LegalHoldPlaced,
    LegalHoldReleased,
    PurgeCompleted,
    RetentionSweepReported,
)
from shared.routing import EventRoutes
from shared.telemetry import Telemetry
from shared.unit_of_work import Work


def create_routes(
    *, service: RetentionService, sweeps: SweepService, telemetry: Telemetry
) -> EventRoutes:
    """What retention does with the events it consumes."""
    routes = EventRoutes("retention", telemetry)

    @routes.on(AccountPlanChanged)
    async def on_account_plan_changed(event: Envelope[AccountPlanChanged], work: Work) -> None:
        """Keep the account's plan: its sweeps' cutoffs (PLAN-RETENTION)."""
        await sweeps.note_plan(event.data, work)

    @routes.on(RetentionSweepReported)
    async def on_retention_sweep_reported(
        event: Envelope[RetentionSweepReported], work: Work
    ) -> None:
        """Add a service's sweep of one account to the sweep's count."""
        await sweeps.record_report(event, work)

    @routes.on(AccountTerminated)
    async def on_account_terminated(event: Envelope[AccountTerminated], work: Work) -> None:
        """Start the termination saga."""
        await service.start_termination(terminated=event.data, work=work)

    @routes.on(ExportSliceChunk)
    async def on_export_slice_chunk(event: Envelope[ExportSliceChunk], work: Work) -> None:
        """Keep a piece of a participant's slice."""
        await service.receive_slice_chunk(event=event, work=work)

    @routes.on(ExportSliceWritten)
    async def on_export_slice_written(event: Envelope[ExportSliceWritten], work: Work) -> None:
        """Collect a slice; assemble and send the bundle when all are in."""
        await service.record_slice(event=event, work=work)

    @routes.on(ExportDelivered)
    async def on_export_delivered(event: Envelope[ExportDelivered], work: Work) -> None:
        """Start the purge once the customer was sent their export."""
        await service.record_delivery(delivered=event.data, work=work)

    @routes.on(PurgeCompleted)
    async def on_purge_completed(event: Envelope[PurgeCompleted], work: Work) -> None:
        """Collect a purge confirmation; certify when all are in."""
        await service.record_purge(event=event, work=work)

    @routes.on(LegalHoldPlaced)
    async def on_legal_hold_placed(event: Envelope[LegalHoldPlaced], work: Work) -> None:
        """No termination of the account purges while the hold stands (LAW)."""
        await service.note_hold_placed(placed=event.data, work=work)

    @routes.on(LegalHoldReleased)
    async def on_legal_hold_released(event: Envelope[LegalHoldReleased], work: Work) -> None:
        """A termination that waited for the hold goes on, if no other stands."""
        await service.note_hold_released(released=event.data, work=work)

    return routes
