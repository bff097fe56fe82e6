"""/healthz tells the truth on the real broker: a stuck consumer and a message that keeps
coming back are reported, not only whether the database and broker answer."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from devstack.broker import EmbeddedBroker
from devstack.processes import free_port
from devstack.stack import Stack
from devstack.testing import eventually, produce
from shared.contracts import Envelope, PurgeRequested, new_envelope
from shared.db import create_engine
from shared.delivery import CREATE_OUTBOX_NOTIFY_SQL, DeliveryTable
from shared.health import ConsumerProgress
from shared.routing import EventRoutes
from shared.runtime import ServiceRuntime, create_consumer_app, create_runtime
from shared.settings import KafkaSettings, KeyStoreSettings, ServiceSettings
from shared.unit_of_work import Work

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def database_url(infrastructure: Stack) -> str:
    name = f"health_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(infrastructure.create_databases, [name], suffixed=False)
    url = infrastructure.database_url("x").rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(DeliveryTable.metadata.create_all)
        for statement in CREATE_OUTBOX_NOTIFY_SQL:
            await connection.execute(text(statement))
    await engine.dispose()
    return url


@pytest.fixture
async def runtime_with(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, keystore_settings: KeyStoreSettings
) -> AsyncIterator[Callable[[Any], Any]]:
    started: list[ServiceRuntime[ServiceSettings]] = []
    served: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(
        handler: Any,
        *,
        own_prefix: bool = False,
        bootstrap: str | None = None,
        as_consumer_app: bool = False,
    ) -> ServiceRuntime[ServiceSettings]:
        # Its own prefix: its own topics and consumer group, with nothing left by other tests.
        prefix = f"{topic_prefix}{uuid.uuid4().hex[:6]}." if own_prefix else topic_prefix
        settings = ServiceSettings(
            environment="test",
            database_url=database_url,
            kafka=KafkaSettings(
                bootstrap_servers=bootstrap or kafka_bootstrap,
                topic_prefix=prefix,
                retry_backoff_s=0.01,
            ),
            keystore=keystore_settings,
            operator_token="test-operator-token",  # type: ignore[arg-type]
        )
        runtime = create_runtime(
            "billing", settings, topics=["purge.requested"], configure_logs=False
        )
        runtime.progress = ConsumerProgress(stall_after_s=1.0)
        routes = EventRoutes("billing", runtime.telemetry)
        routes.on(PurgeRequested)(handler)
        runtime.consume(routes)
        if as_consumer_app:  # started as the consumer services start: FastStream's app
            ready, stop = asyncio.Event(), asyncio.Event()

            async def serve() -> None:  # the app's lifespan, entered and left in one task
                async with create_consumer_app(runtime).start_lifespan_context():
                    ready.set()
                    await stop.wait()

            task = asyncio.create_task(serve())
            served.append((stop, task))
            readied = asyncio.create_task(ready.wait())
            await asyncio.wait([task, readied], return_when=asyncio.FIRST_COMPLETED)
            readied.cancel()
            if task.done():
                task.result()  # a start that failed fails the test with its error
            return runtime
        await runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        await runtime.stop()
    for stop, task in served:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)


async def _purges(settings: ServiceSettings, count: int) -> None:
    for _ in range(count):
        envelope = new_envelope(
            PurgeRequested(account_id=uuid.uuid4(), saga_id=uuid.uuid4()), source="retention"
        )
        await produce(
            settings.kafka.bootstrap_servers,
            settings.kafka.topic("purge.requested"),
            envelope.model_dump_json().encode(),
            key=envelope.subject.encode(),
            headers=[("content-type", b"application/json")],
        )


async def test_a_consumer_with_lag_and_no_progress_is_reported_unhealthy(
    runtime_with: Callable[[Any], Any],
) -> None:
    release = asyncio.Event()

    async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
        await release.wait()  # a handler stuck on something that never answers

    runtime = await runtime_with(on_purge_requested)
    await _purges(runtime.settings, 5)

    async def stalled() -> Any:
        healthy, checks = await runtime.health()
        return checks if not healthy and "no progress" in checks["consumer"] else None

    checks = await eventually(stalled, timeout=30, what="the stall was reported")
    assert checks["database"] == "ok"
    assert checks["kafka"] == "ok", "the servers answer; the consumer is what is wrong"
    release.set()

    async def recovered() -> bool:
        healthy, _ = await runtime.health()
        return healthy

    await eventually(recovered, timeout=30, what="health recovered once the consumer moved")


async def test_a_message_that_keeps_coming_back_is_reported_unhealthy(
    runtime_with: Callable[[Any], Any],
) -> None:
    async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
        raise ConnectionRefusedError(111, "the payment gateway is down")

    runtime = await runtime_with(on_purge_requested)
    await _purges(runtime.settings, 1)

    async def stuck() -> Any:
        healthy, checks = await runtime.health()
        return checks if not healthy and checks["redeliveries"] != "ok" else None

    checks = await eventually(stuck, timeout=30, what="the redeliveries were reported")
    assert "redelivered past the limit" in checks["redeliveries"]


async def test_a_relay_that_cannot_publish_is_reported_unhealthy(
    runtime_with: Callable[[Any], Any],
) -> None:
    async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
        return None

    runtime = await runtime_with(on_purge_requested)
    assert runtime.relay._producer is not None
    await runtime.relay._producer.stop()  # the broker is gone, as far as the relay can tell
    async with runtime.units() as work:
        work.emit(PurgeRequested(account_id=uuid.uuid4(), saga_id=uuid.uuid4()))

    async def relay_down() -> Any:
        healthy, checks = await runtime.health()
        return checks if not healthy and checks["relay"].startswith("cannot publish") else None

    checks = await eventually(relay_down, timeout=40, what="the relay's failure was reported")
    assert checks["database"] == "ok"


def _lag_samples(exposition: bytes, group: str) -> dict[tuple[str, str], float]:
    """The exported consumer lag of a group, by (topic, partition)."""
    return {
        (
            sample.labels["messaging_destination_name"],
            sample.labels["messaging_destination_partition_id"],
        ): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        if family.name == "messaging_kafka_consumer_lag"
        for sample in family.samples
        if sample.labels["messaging_consumer_group_name"] == group
    }


async def test_consumer_lag_is_exported_per_partition_and_falls_to_zero_once_consumed(
    runtime_with: Callable[[Any], Any],
) -> None:
    """/metrics measures each partition's lag from the consumer's positions and high
    watermarks, which the embedded broker supports as any other."""
    release = asyncio.Event()

    async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
        await release.wait()

    runtime = await runtime_with(on_purge_requested, own_prefix=True)
    group = f"{runtime.settings.kafka.topic_prefix}billing"
    topic = runtime.settings.kafka.topic("purge.requested")
    await _purges(runtime.settings, 20)

    async def lags() -> dict[tuple[str, str], float]:
        return _lag_samples(await runtime.metrics_text(), group)

    async def behind() -> dict[tuple[str, str], float] | None:
        found = await lags()
        return found if found and sum(found.values()) > 0 else None

    async def caught_up() -> bool:
        found = await lags()
        return bool(found) and sum(found.values()) == 0

    try:
        held = await eventually(behind, timeout=30, what="records behind while one is held")
        assert {found_topic for found_topic, _ in held} == {topic}, "its own topic's partitions"
        # The client may fetch ahead of the stuck handler, but the held record is consumed.
        assert sum(held.values()) <= 19
    finally:
        release.set()  # a handler left waiting would keep the consumer from ever stopping
    await eventually(caught_up, timeout=30, what="the lag fell to zero")


@pytest.mark.parametrize("as_consumer_app", [False, True], ids=["billing", "consumer-service"])
async def test_a_service_started_while_the_broker_is_down_waits_for_it_and_consumes(
    runtime_with: Callable[..., Any], tmp_path: Path, as_consumer_app: bool
) -> None:
    """A service (or one instance of it) started while the broker restarts must not exit:
    uvicorn stops every instance of a service when one fails to start (a chaos run lost
    billing that way). Its start waits for the broker, then it consumes as usual."""
    broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path / "tansu")
    handled: list[uuid.UUID] = []

    async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
        handled.append(event.data.saga_id)

    starting = asyncio.create_task(
        runtime_with(
            on_purge_requested,
            own_prefix=True,
            bootstrap=broker.bootstrap_servers,
            as_consumer_app=as_consumer_app,
        )
    )
    try:
        await asyncio.sleep(3)
        assert not starting.done(), "the start waits while the broker is down"
        await asyncio.to_thread(broker.start)
        runtime = await asyncio.wait_for(starting, timeout=60)
        await _purges(runtime.settings, 1)
        await eventually(lambda: handled, timeout=30, what="the event was consumed")
        assert runtime.relay.health()["publishing"]
    finally:
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        broker.stop()
