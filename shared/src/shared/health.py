"""`/healthz` (database and broker answer) and Prometheus `/metrics`, for every service."""

from __future__ import annotations

import json
from typing import Any

from faststream.asgi import AsgiResponse, get
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import database_is_reachable


async def health_report(engine: AsyncEngine, broker: KafkaBroker) -> tuple[bool, dict[str, str]]:
    """Check the service's database and broker; healthy only when both answer."""
    database = await database_is_reachable(engine)
    try:
        kafka = bool(await broker.ping(timeout=2.0))
    except Exception:
        kafka = False
    checks = {"database": "ok" if database else "down", "kafka": "ok" if kafka else "down"}
    return database and kafka, checks


def asgi_health_routes(
    engine: AsyncEngine, broker: KafkaBroker, registry: CollectorRegistry
) -> list[tuple[str, Any]]:
    """The `/healthz` and `/metrics` routes of a consumer-only (FastStream ASGI) service."""

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        healthy, checks = await health_report(engine, broker)
        body = {"status": "ok" if healthy else "unavailable", "checks": checks}
        return AsgiResponse(
            json.dumps(body).encode(),
            status_code=200 if healthy else 503,
            headers={"content-type": "application/json"},
        )

    @get(include_in_schema=False)
    async def metrics(scope: Any) -> AsgiResponse:
        return AsgiResponse(
            generate_latest(registry),
            status_code=200,
            headers={"content-type": CONTENT_TYPE_LATEST},
        )

    return [("/healthz", healthz), ("/metrics", metrics)]
