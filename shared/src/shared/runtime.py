"""The wiring every service shares: telemetry, database, outbox, broker and relay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import SessionFactory, create_engine, create_session_factory
from shared.health import asgi_health_routes
from shared.kafka import DeadLetterPolicy, create_broker, ensure_topics
from shared.outbox import Outbox, OutboxRelay
from shared.settings import ServiceSettings
from shared.telemetry import Telemetry, configure_logging, create_telemetry

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime(Generic[SettingsT]):
    """A service's infrastructure; built by a factory, started and stopped by its app's lifespan."""

    name: str
    settings: SettingsT
    telemetry: Telemetry
    engine: AsyncEngine
    sessions: SessionFactory
    outbox: Outbox
    broker: KafkaBroker
    relay: OutboxRelay
    topics: tuple[str, ...] = field(default=())

    async def start(self) -> None:
        """Create missing topics, connect the broker (and its subscribers), start the relay."""
        await ensure_topics(self.settings.kafka, self.topics)
        await self.broker.start()
        await self.relay.start()
        log.info("%s started", self.name)

    async def stop(self) -> None:
        """Stop relaying, consuming, and close connections."""
        await self.relay.stop()
        await self.broker.stop()
        await self.engine.dispose()
        self.telemetry.shutdown()


def create_runtime(
    name: str,
    settings: SettingsT,
    *,
    topics: Iterable[str],
    telemetry: Telemetry | None = None,
    configure_logs: bool = True,
) -> ServiceRuntime[SettingsT]:
    """Build a service's infrastructure from its settings; nothing connects until start()."""
    if configure_logs:
        configure_logging(name, settings.log_level)
    telemetry = telemetry or create_telemetry(name, otlp_endpoint=settings.otlp_endpoint)
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    dead_letters = DeadLetterPolicy(
        consumer=name,
        telemetry=telemetry,
        max_attempts=settings.kafka.max_attempts,
        retry_backoff_s=settings.kafka.retry_backoff_s,
    )
    broker = create_broker(
        service=name, kafka=settings.kafka, telemetry=telemetry, dead_letters=dead_letters
    )
    topics = tuple(topics)
    relay = OutboxRelay(
        engine=engine,
        kafka=settings.kafka,
        telemetry=telemetry,
        topics=topics,
        batch_size=settings.relay_batch_size,
        poll_interval_s=settings.relay_poll_interval_s,
        replay_window_s=settings.relay_replay_window_s,
        broker_check_interval_s=settings.relay_broker_check_interval_s,
    )
    return ServiceRuntime(
        name=name,
        settings=settings,
        telemetry=telemetry,
        engine=engine,
        sessions=create_session_factory(engine),
        outbox=Outbox(source=name, kafka=settings.kafka),
        broker=broker,
        relay=relay,
        topics=topics,
    )


def consumed_and_produced(service: str) -> tuple[str, ...]:
    """The topics a service reads or writes, from the topic catalogue."""
    from shared.contracts import TOPICS

    return tuple(t.name for t in TOPICS if service in t.producers or service in t.consumers)


def create_consumer_app(
    runtime: ServiceRuntime[SettingsT],
    *,
    background: Iterable[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> AsgiFastStream:
    """The ASGI app of a consumer-only service: subscribers, relay, `/healthz` and `/metrics`."""
    app = AsgiFastStream(
        runtime.broker,
        asgi_routes=asgi_health_routes(runtime.engine, runtime.broker, runtime.telemetry.registry),
        logger=logging.getLogger(runtime.name),
    )
    tasks: list[asyncio.Task[None]] = []

    @app.on_startup
    async def create_topics() -> None:
        await ensure_topics(runtime.settings.kafka, runtime.topics)

    @app.after_startup
    async def start_relay() -> None:
        await runtime.relay.start()
        tasks.extend(asyncio.create_task(job()) for job in background)

    @app.on_shutdown
    async def stop_relay() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.relay.stop()

    @app.after_shutdown
    async def close() -> None:
        await runtime.engine.dispose()
        runtime.telemetry.shutdown()

    return app
