"""Retention's Kafka subscribers: each moves a termination saga one step."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from retention.services import RetentionService
from shared.contracts import (
    AccountTerminated,
    Envelope,
    ExportDelivered,
    ExportSliceWritten,
    PurgeCompleted,
)
from shared.kafka import subscriber_options
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

SERVICE = "retention"


def create_router(*, service: RetentionService, runtime: ServiceRuntime[ServiceSettings]) -> KafkaRouter:
    """Subscribe retention to the saga's events."""
    router = KafkaRouter()
    kafka = runtime.settings.kafka
    options = subscriber_options(group_id=SERVICE)

    @router.subscriber(kafka.topic("account.terminated"), **options)
    async def on_account_terminated(event: Envelope[AccountTerminated]) -> None:
        """Start the termination saga."""
        if not await service.start_termination(event=event, consumer="retention.on_account_terminated"):
            runtime.count_duplicate("retention.on_account_terminated")

    @router.subscriber(kafka.topic("export.slice_written"), **options)
    async def on_export_slice_written(event: Envelope[ExportSliceWritten]) -> None:
        """Collect a slice; assemble the bundle when all are in."""
        if not await service.record_slice(event=event, consumer="retention.on_export_slice_written"):
            runtime.count_duplicate("retention.on_export_slice_written")

    @router.subscriber(kafka.topic("export.delivered"), **options)
    async def on_export_delivered(event: Envelope[ExportDelivered]) -> None:
        """Start the purge once the customer was sent their export."""
        if not await service.record_delivery(event=event, consumer="retention.on_export_delivered"):
            runtime.count_duplicate("retention.on_export_delivered")

    @router.subscriber(kafka.topic("purge.completed"), **options)
    async def on_purge_completed(event: Envelope[PurgeCompleted]) -> None:
        """Collect a purge confirmation; certify when all are in."""
        if not await service.record_purge(event=event, consumer="retention.on_purge_completed"):
            runtime.count_duplicate("retention.on_purge_completed")

    return router
