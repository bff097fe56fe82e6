"""Audit's event handlers."""

from __future__ import annotations

from audit.services import AuditService
from shared.contracts import DataAccessed, Envelope
from shared.participant import Participant
from shared.routing import EventRoutes
from shared.telemetry import Telemetry
from shared.unit_of_work import Work


def create_routes(
    *, service: AuditService, participant: Participant, telemetry: Telemetry
) -> EventRoutes:
    """What audit does with the events it consumes."""
    routes = EventRoutes("audit", telemetry)

    @routes.on(DataAccessed)
    async def on_data_accessed(event: Envelope[DataAccessed], work: Work) -> None:
        """Append the access to the account's trail."""
        await service.record_access(event=event, work=work)

    participant.register(routes)
    return routes
