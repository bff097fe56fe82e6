"""Billing's Kafka subscribers: its steps of the termination saga."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from billing.services import BillingService
from shared.contracts import Envelope, ExportRequested, PurgeRequested
from shared.kafka import subscriber_options
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

SERVICE = "billing"


def create_router(*, service: BillingService, runtime: ServiceRuntime[ServiceSettings]) -> KafkaRouter:
    """Subscribe billing to the saga's export and purge requests."""
    router = KafkaRouter()
    kafka = runtime.settings.kafka
    options = subscriber_options(group_id=SERVICE)

    @router.subscriber(kafka.topic("export.requested"), **options)
    async def on_export_requested(event: Envelope[ExportRequested]) -> None:
        """Write billing's slice of the account to the export store."""
        if not await service.export_account(event=event, consumer="billing.on_export_requested"):
            runtime.count_duplicate("billing.on_export_requested")

    @router.subscriber(kafka.topic("purge.requested"), **options)
    async def on_purge_requested(event: Envelope[PurgeRequested]) -> None:
        """Delete every row about the account and confirm."""
        if not await service.purge_account(event=event, consumer="billing.on_purge_requested"):
            runtime.count_duplicate("billing.on_purge_requested")

    return router
