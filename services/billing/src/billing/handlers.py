"""Billing's event handlers: its part in terminations, from its account data map."""

from __future__ import annotations

from shared.participant import Participant
from shared.routing import EventRoutes
from shared.telemetry import Telemetry


def create_routes(*, participant: Participant, telemetry: Telemetry) -> EventRoutes:
    """What billing does with the events it consumes: export and purge an account."""
    routes = EventRoutes("billing", telemetry)
    participant.register(routes)
    return routes
