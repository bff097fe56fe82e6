"""Audit's Kafka subscribers."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from audit.services import AuditService
from shared.contracts import DataAccessed, Envelope, ExportRequested, PurgeRequested
from shared.kafka import subscriber_options
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

SERVICE = "audit"


def create_router(*, service: AuditService, runtime: ServiceRuntime[ServiceSettings]) -> KafkaRouter:
    """Subscribe audit to data accesses and the saga's requests."""
    router = KafkaRouter()
    kafka = runtime.settings.kafka
    options = subscriber_options(group_id=SERVICE)

    @router.subscriber(kafka.topic("data.accessed"), **options)
    async def on_data_accessed(event: Envelope[DataAccessed]) -> None:
        """Append the access to the account's trail."""
        if not await service.record_access(event=event, consumer="audit.on_data_accessed"):
            runtime.count_duplicate("audit.on_data_accessed")

    @router.subscriber(kafka.topic("export.requested"), **options)
    async def on_export_requested(event: Envelope[ExportRequested]) -> None:
        """Write the account's trail to the export store."""
        if not await service.export_account(event=event, consumer="audit.on_export_requested"):
            runtime.count_duplicate("audit.on_export_requested")

    @router.subscriber(kafka.topic("purge.requested"), **options)
    async def on_purge_requested(event: Envelope[PurgeRequested]) -> None:
        """Delete the account's trail and confirm."""
        if not await service.purge_account(event=event, consumer="audit.on_purge_requested"):
            runtime.count_duplicate("audit.on_purge_requested")

    return router
