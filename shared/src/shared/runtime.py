"""The wiring every service shares: telemetry, database, outbox, broker and relay."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

from faststream.asgi import AsgiFastStream, AsgiResponse, HttpHandler
from faststream.kafka import KafkaBroker
from prometheus_client import generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.asgi_api import (
    ApiRoute,
    api_route,
    json_response,
    operator_refusal,
    problem,
    whole_number,
)
from shared.data_map import AccountDataMap
from shared.db import SessionFactory, StatementSpans, create_engine, create_session_factory
from shared.dead_letters import DeadLetterDesk, dead_letter_routes
from shared.export_store import ExportStore, create_export_store
from shared.health import (
    Check,
    ConsumerProgress,
    HealthCheck,
    asgi_health_routes,
    health_report,
    record_consumer_lag,
)
from shared.http import SecurityHeadersMiddleware, UnhandledErrorMiddleware
from shared.inbox import prune_inbox
from shared.kafka import DeadLetterPolicy, create_broker, ensure_topics, waiting_out_outages
from shared.keystore import KeyStore, create_key_store
from shared.legal_holds import LegalHolds
from shared.outbox import Outbox, OutboxRelay
from shared.participant import Participant
from shared.routing import EventRoutes
from shared.settings import ServiceSettings
from shared.telemetry import (
    UNOBSERVED_PATHS,
    MatchedRoute,
    RequestTelemetryMiddleware,
    Telemetry,
    configure_logging,
    create_telemetry,
)
from shared.telemetry_privacy import AllowedMetrics
from shared.unit_of_work import UnitOfWorkFactory

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
RELAY_STALL_S = 10.0  # a relay failing to publish for this long makes the service unhealthy
BACKGROUND_STOP_S = 10.0  # how long a cancelled background job may take to end at shutdown
log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime(Generic[SettingsT]):
    """A service's infrastructure; built by a factory, started and stopped by its app's lifespan."""

    name: str
    settings: SettingsT
    telemetry: Telemetry
    engine: AsyncEngine
    sessions: SessionFactory
    keys: KeyStore
    store: ExportStore
    outbox: Outbox
    units: UnitOfWorkFactory
    broker: KafkaBroker
    dead_letters: DeadLetterPolicy
    relay: OutboxRelay
    topics: tuple[str, ...] = field(default=())

    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    extra_checks: list[HealthCheck] = field(default_factory=list)
    progress: ConsumerProgress = field(default_factory=ConsumerProgress)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @functools.cached_property
    def dead_letter_desk(self) -> DeadLetterDesk:
        """This service's consumer's dead letters and their redrive, for operators."""
        return DeadLetterDesk(service=self.name, kafka=self.settings.kafka, units=self.units)

    async def start(self) -> None:
        """Create missing topics, connect the broker (and its subscribers), start the relay."""
        kafka = self.settings.kafka
        await waiting_out_outages("the broker", lambda: ensure_topics(kafka, self.topics))
        await self.keys.start()
        await waiting_out_outages("the broker", self.broker.start)
        await self.start_background()
        if self.settings.environment != "test":
            # What startup made lives as long as the process: the collector stops scanning it
            # again and again (full collections over it were the API's worst latencies). Not
            # in tests, where many services start in one process and their garbage would stay.
            gc.freeze()
        log.info("%s started", self.name)

    async def start_background(self) -> None:
        """Start the relay, housekeeping and the service's own background jobs."""
        await waiting_out_outages("the broker", self.relay.start)
        jobs = [self.housekeeping, *self.background]
        self._tasks.extend(asyncio.create_task(job(), name=job.__name__) for job in jobs)

    async def stop_background(self) -> None:
        """Stop background jobs and the relay; a job that does not stop in time is left
        behind (and named), so the consumers still leave their group and the process ends."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=BACKGROUND_STOP_S)
            for task in stuck:
                log.error(
                    "background job %s did not stop; shutting down without it", task.get_name()
                )
        self._tasks.clear()
        await self.relay.stop()

    async def stop(self) -> None:
        """Stop relaying, consuming, and close connections."""
        await self.stop_background()
        await self.broker.stop()
        await self.keys.close()
        await self.engine.dispose()
        self.telemetry.shutdown()

    @property
    def health_checks(self) -> list[HealthCheck]:
        """What /healthz checks beyond the database and broker answering."""

        async def consumer() -> Check:
            return await self.progress.check(self.broker)

        async def redeliveries() -> Check:
            stuck = self.dead_letters.stuck()
            if stuck:
                return Check("redeliveries", False, f"redelivered past the limit: {stuck[:5]}")
            return Check("redeliveries", True)

        async def relay() -> Check:
            state = self.relay.health()
            if not state["publishing"] and state["stalled_s"] > RELAY_STALL_S:
                return Check(
                    "relay",
                    False,
                    f"cannot publish for {state['stalled_s']:.0f}s "
                    f"({state['consecutive_failures']} failures): {state['last_error']}",
                )
            if state["parked"]:
                return Check("relay", True, f"{state['role']}, {state['parked']} parked")
            return Check("relay", True)

        return [consumer, redeliveries, relay, *self.extra_checks]

    async def health(self) -> tuple[bool, dict[str, str]]:
        """The health report."""
        return await health_report(self.engine, self.broker, self.health_checks)

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition, with consumer lag measured now."""
        await record_consumer_lag(
            self.broker,
            f"{self.settings.kafka.topic_prefix}{self.name}",
            self.telemetry.delivery.consumer_lag,
        )
        return bytes(generate_latest(AllowedMetrics(self.telemetry.registry)))

    def participant(self, data_map: AccountDataMap) -> Participant:
        """The service's part in terminations, derived from its account data map."""
        return Participant(
            data_map=data_map,
            engine=self.engine,
            store=self.store,
            keys=self.keys,
            guard=LegalHolds(self.engine),
            tracer=self.telemetry.tracer("shared.participant"),
        )

    def consume(self, routes: EventRoutes) -> None:
        """Subscribe the service's routes, dispatching through its units of work and key store."""
        routes.bind(units=self.units, keys=self.keys).subscribe(
            self.broker, self.settings.kafka, self.dead_letters
        )

    async def housekeeping(self) -> None:
        """Prune the inbox past its window, now and then; a failure waits for the next round."""
        while True:
            try:
                pruned = await prune_inbox(
                    self.engine, older_than_s=self.settings.inbox_retention_s
                )
                if pruned:
                    log.info("pruned %d inbox entries past their window", pruned)
            except Exception:
                log.exception("inbox pruning failed; trying again next round")
            await asyncio.sleep(self.settings.housekeeping_interval_s)


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
    telemetry = telemetry or create_telemetry(
        name, otlp_endpoint=settings.otlp_endpoint, tracing=settings.tracing
    )
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    StatementSpans(telemetry.recorder("shared.db"), url=settings.database_url).attach(engine)
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
    sessions = create_session_factory(engine)
    keys = create_key_store(settings.keystore)
    outbox = Outbox(source=name, kafka=settings.kafka, keys=keys, producer=lambda: relay.producer)
    return ServiceRuntime(
        name=name,
        settings=settings,
        telemetry=telemetry,
        engine=engine,
        sessions=sessions,
        keys=keys,
        store=create_export_store(settings, name),
        outbox=outbox,
        units=UnitOfWorkFactory(sessions=sessions, outbox=outbox),
        broker=broker,
        dead_letters=dead_letters,
        relay=relay,
        topics=topics,
    )


def consumed_and_produced(service: str) -> tuple[str, ...]:
    """The topics a service reads or writes, from the topic catalogue."""
    from shared.contracts import TOPICS

    return tuple(t.name for t in TOPICS if service in t.producers or service in t.consumers)


TRACE_SPANS_MAX = 5000


def operator_routes(runtime: ServiceRuntime[Any]) -> list[tuple[str, Any]]:
    """What every service serves its operators (bearer: its operator token): its dead letters
    and their redrive, and its recent spans (`GET /traces?limit=`, kept in process when no
    collector is set; 404 when they go to the collector)."""
    token = runtime.settings.operator_token.get_secret_value()
    recent = runtime.telemetry.recent

    @api_route
    async def traces(scope: Any) -> AsgiResponse:
        if (refused := operator_refusal(scope, token)) is not None:
            return refused
        if recent is None:
            return problem(404, "Not found", "spans go to the collector, not kept here")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        limit = whole_number(query.get("limit", ["500"])[-1], max_digits=4)
        if limit is None or not 1 <= limit <= TRACE_SPANS_MAX:
            return problem(
                422, "Invalid field", f"limit: a whole number from 1 to {TRACE_SPANS_MAX}", "limit"
            )
        return json_response(recent.recent(limit))

    return [*dead_letter_routes(runtime.dead_letter_desk, token), ("/traces", traces)]


class ObservedAsgiFastStream(AsgiFastStream):
    """FastStream's ASGI app with billing's request telemetry (a server span and a duration
    sample per request, by route), billing's security headers, and billing's problem answers:
    an unknown path is a 404 problem, an error a 503 (outage) or 500 problem that logs no
    values. The consumer services serve customers too: the export link, the access report."""

    def __init__(self, *brokers: Any, telemetry: Telemetry, **options: Any) -> None:
        for path, route in options.get("asgi_routes", ()):
            if isinstance(route, HttpHandler) and not isinstance(route, ApiRoute):
                # FastStream's handler answers an error as plain text 500, outages included.
                raise TypeError(f"{path}: serve it with shared.asgi_api.api_route")
        super().__init__(*brokers, **options)
        self._observed = RequestTelemetryMiddleware(
            SecurityHeadersMiddleware(UnhandledErrorMiddleware(self._route)),
            telemetry=telemetry,
            excluded_paths=UNOBSERVED_PATHS,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve an HTTP request inside its telemetry; anything else as FastStream does."""
        if scope["type"] == "http":
            await self._observed(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _route(self, scope: Any, receive: Any, send: Any) -> None:
        for path, route in self.routes:
            if scope["path"] == path:
                scope["route"] = MatchedRoute(path)
                await route(scope, receive, send)
                return
        await problem(404, "Not found", "no such resource")(scope, receive, send)


def create_consumer_app(
    runtime: ServiceRuntime[SettingsT],
    *,
    background: Iterable[Callable[[], Coroutine[Any, Any, None]]] = (),
    routes: Iterable[tuple[str, Any]] = (),
    health_checks: Iterable[HealthCheck] = (),
) -> AsgiFastStream:
    """The ASGI app of a consumer-only service: subscribers, relay, `/healthz` and `/metrics`,
    with request telemetry."""
    runtime.extra_checks.extend(health_checks)
    app = ObservedAsgiFastStream(
        runtime.broker,
        telemetry=runtime.telemetry,
        asgi_routes=[
            *asgi_health_routes(
                runtime.engine, runtime.broker, runtime.metrics_text, runtime.health_checks
            ),
            *operator_routes(runtime),
            *routes,
        ],
        logger=logging.getLogger(runtime.name),
    )
    runtime.background.extend(background)

    @app.on_startup
    async def create_topics() -> None:
        # FastStream starts the broker after this: connected here, while waiting out an
        # outage as `ServiceRuntime.start` does, so an instance started meanwhile does not exit.
        kafka = runtime.settings.kafka
        await waiting_out_outages("the broker", lambda: ensure_topics(kafka, runtime.topics))
        await runtime.keys.start()
        await waiting_out_outages("the broker", runtime.broker.connect)

    @app.after_startup
    async def start_relay() -> None:
        await runtime.start_background()

    @app.on_shutdown
    async def stop_relay() -> None:
        await runtime.stop_background()

    @app.after_shutdown
    async def close() -> None:
        await runtime.keys.close()
        await runtime.engine.dispose()
        runtime.telemetry.shutdown()

    return app
