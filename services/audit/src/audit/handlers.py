"""Audit's event handlers."""

from __future__ import annotations

from audit.services import AuditService
from shared.contracts import (
    AccessGrantChanged,
    AccountPurged,
    DataAccessed,
    Envelope,
    PurgeRequested,
)
from shared.legal_holds import HoldEvent
from shared.participant import Participant
from shared.routing import EventRoutes
from shared.telemetry import Telemetry
from shared.unit_of_work import Work


def create_routes(
    *, service: AuditService, participant: Participant, telemetry: Telemetry
) -> EventRoutes:
    """What audit does with the events it consumes."""
    routes = EventRoutes("audit", telemetry)

    @routes.on_batch(DataAccessed)
    async def on_data_accessed(events: list[Envelope[DataAccessed]], work: Work) -> None:
        """Append the accesses to their accounts' trails, many at once."""
        await service.record_accesses(events, work)

    @routes.on(AccessGrantChanged)
    async def on_access_grant_changed(event: Envelope[AccessGrantChanged], work: Work) -> None:
        """Append the grant's opening or revocation; keep it to check reads against."""
        await service.record_grant(event=event, work=work)

    @routes.on(AccountPurged)
    async def on_account_purged(event: Envelope[AccountPurged], work: Work) -> None:
        """Chain the purge certificate into the global chain, as proof kept (TERMINATION)."""
        await service.record_purge_certificate(event=event, work=work)

    async def on_legal_hold(event: HoldEvent, work: Work) -> None:
        """Append the placing or release of a legal hold to the account's trail (LAW)."""
        await service.record_legal_hold(event, work)

    async def after_purge(request: PurgeRequested, work: Work) -> None:
        """The account's links stay, marked as purged: the global chain still verifies."""
        await service.note_purged(request, work)

    participant.register(routes, on_legal_hold=on_legal_hold, after_purge=after_purge)
    return routes
