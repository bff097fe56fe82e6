"""Billing's event handlers: its part in terminations, from its account data map, the
fan-out of its own events to the accounts' webhook endpoints, and the email delivery log."""

from __future__ import annotations

from typing import Any

from billing.deliveries.service import record_delivery
from billing.webhooks.domain import WEBHOOK_EVENT_TYPES
from billing.webhooks.service import fan_out
from shared.contracts import EVENT_TYPES, EmailStatusChanged, Envelope
from shared.participant import Participant
from shared.routing import EventRoutes
from shared.telemetry import Telemetry
from shared.unit_of_work import Work


def create_routes(*, participant: Participant, telemetry: Telemetry) -> EventRoutes:
    """What billing does with the events it consumes: export and purge an account; queue its
    own events for webhook endpoints (each in the inbox, so a redelivery queues nothing)."""
    routes = EventRoutes("billing", telemetry)
    participant.register(routes)
    for event_type in WEBHOOK_EVENT_TYPES:
        routes.on(EVENT_TYPES[event_type])(_webhook_handler(event_type))

    @routes.on(EmailStatusChanged)
    async def on_email_status_changed(event: Envelope[EmailStatusChanged], work: Work) -> None:
        """Keep the account's delivery log."""
        await record_delivery(event, work)

    return routes


def _webhook_handler(event_type: str) -> Any:
    async def handler(event: Envelope[Any], work: Work) -> None:
        await fan_out(event, work)

    handler.__name__ = f"webhooks_{event_type.replace('.', '_')}"
    return handler
