"""`/healthz` and Prometheus `/metrics` for every service.

Health tells the truth: not only whether the database and the broker answer, but whether the
consumer makes progress while it has lag, whether a message keeps coming back, whether the
relay can publish, and whatever the service adds (retention: saga steps past their deadline).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream.asgi import AsgiResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.asgi_api import api_route
from shared.db import database_is_reachable


@dataclass(frozen=True)
class Check:
    """One line of the health report."""

    name: str
    ok: bool
    detail: str = "ok"


HealthCheck = Callable[[], Awaitable[Check]]


@dataclass
class ConsumerProgress:
    """Tells a consumer that is stuck (lag, but no progress) from one that is idle or busy.

    Measured from inside the consumer (its positions and the partitions' high watermarks), which
    works on any broker, the embedded one included.
    """

    stall_after_s: float = 60.0
    _last_progress: float = field(default_factory=time.monotonic)
    _last_positions: dict[Any, int] = field(default_factory=dict)

    async def lag_and_progress(self, consumer: Any) -> tuple[int, bool]:
        """Total lag of the consumer's partitions, and whether it moved since last asked."""
        lag = 0
        positions: dict[Any, int] = {}
        for partition, position, behind in await partition_lags(consumer):
            positions[partition] = position
            lag += behind
        moved = positions != self._last_positions
        self._last_positions = positions
        if moved or lag == 0:
            self._last_progress = time.monotonic()
        return lag, moved

    async def check(self, broker: KafkaBroker) -> Check:
        """Unhealthy when there is lag and no partition moved for `stall_after_s` seconds."""
        lag = 0
        for subscriber in broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            try:
                found, _ = await self.lag_and_progress(consumer)
            except Exception:  # noqa: S112 - a consumer between rebalances has no assignment
                continue
            lag += found
        stalled_for = time.monotonic() - self._last_progress
        if lag and stalled_for > self.stall_after_s:
            return Check("consumer", False, f"lag {lag}, no progress for {stalled_for:.0f}s")
        return Check("consumer", True, f"lag {lag}")


async def partition_lags(consumer: Any) -> list[tuple[Any, int, int]]:
    """(partition, position, lag) of each assigned partition whose high watermark is known."""
    found = []
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        if highwater is None:
            continue
        position = await consumer.position(partition)
        found.append((partition, position, max(highwater - position, 0)))
    return found


async def record_consumer_lag(broker: KafkaBroker, group: str, gauge: Gauge) -> None:
    """Set the lag gauge from the consumers' own positions and high watermarks (which works on
    any broker, the embedded one included); partitions no longer assigned drop out."""
    gauge.clear()
    for subscriber in broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
        if consumer is None:
            continue
        try:
            lags = await partition_lags(consumer)
        except Exception:  # noqa: S112 - a consumer between rebalances has no assignment
            continue
        for partition, _, lag in lags:
            gauge.labels(group, partition.topic, str(partition.partition)).set(lag)


async def health_report(
    engine: AsyncEngine, broker: KafkaBroker, checks: Sequence[HealthCheck] = ()
) -> tuple[bool, dict[str, str]]:
    """Check the database, the broker and the service's own checks; healthy when all pass."""
    results = [Check("database", await database_is_reachable(engine))]
    try:
        kafka = bool(await broker.ping(timeout=2.0))
    except Exception:
        kafka = False
    results.append(Check("kafka", kafka))
    for check in checks:
        try:
            results.append(await check())
        except Exception as exc:
            results.append(Check(getattr(check, "__name__", "check"), False, type(exc).__name__))
    report = {r.name: ("ok" if r.ok and r.detail == "ok" else r.detail) for r in results}
    for result in results:
        if not result.ok and report[result.name] == "ok":
            report[result.name] = "down"
    return all(r.ok for r in results), report


def health_body(healthy: bool, checks: dict[str, str]) -> bytes:
    """The JSON body of /healthz."""
    return json.dumps({"status": "ok" if healthy else "unavailable", "checks": checks}).encode()


def asgi_health_routes(
    engine: AsyncEngine,
    broker: KafkaBroker,
    metrics_text: Callable[[], Awaitable[bytes]],
    checks: Sequence[HealthCheck] = (),
) -> list[tuple[str, Any]]:
    """The `/healthz` and `/metrics` routes of a consumer-only (FastStream ASGI) service."""

    @api_route
    async def healthz(scope: Any) -> AsgiResponse:
        healthy, report = await health_report(engine, broker, checks)
        return AsgiResponse(
            health_body(healthy, report),
            status_code=200 if healthy else 503,
            headers={"content-type": "application/json"},
        )

    @api_route
    async def metrics(scope: Any) -> AsgiResponse:
        return AsgiResponse(
            await metrics_text(),
            status_code=200,
            headers={"content-type": CONTENT_TYPE_LATEST},
        )

    return [("/healthz", healthz), ("/metrics", metrics)]
