"""Retention's entry points: `create_app(settings)` and `python -m retention.main migrate|serve`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from faststream.asgi import AsgiFastStream

from retention.api import (
    certificate_routes,
    export_routes,
    plan_routes,
    saga_routes,
    sagas_health,
    sweep_routes,
)
from retention.handlers import create_routes
from retention.services import RetentionService, SagaTiming
from retention.settings import RetentionSettings
from retention.sweeps import SweepService
from shared.migrations import upgrade_database
from shared.runtime import consumed_and_produced, create_consumer_app, create_runtime
from shared.serving import service_cli
from shared.signing import SigningKey
from shared.telemetry import Telemetry

SERVICE = "retention"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(
    settings: RetentionSettings | None = None, *, telemetry: Telemetry | None = None
) -> AsgiFastStream:
    """Build the retention app: the termination saga's and the sweeps' subscribers, the outbox
    relay, the deadline watch and the sweep schedule."""
    settings = settings or RetentionSettings()
    runtime = create_runtime(
        SERVICE, settings, topics=consumed_and_produced(SERVICE), telemetry=telemetry
    )
    service = RetentionService(
        sessions=runtime.sessions,
        units=runtime.units,
        store=runtime.store,
        keys=runtime.keys,
        participants=settings.participants,
        certificate_key=settings.certificate_key.get_secret_value().encode(),
        signing_key=SigningKey.from_setting(settings.certificate_signing_key.get_secret_value()),
        timing=SagaTiming(
            step_timeout=timedelta(seconds=settings.step_timeout_s),
            max_attempts=settings.max_step_attempts,
        ),
        plans=settings.plans,
        public_url=settings.public_url,
        retired_public_keys=[pem.encode() for pem in settings.certificate_retired_public_keys],
        meter=runtime.telemetry.meter("quittance.retention"),
        tracer=runtime.telemetry.tracer("quittance.retention"),
    )
    sweeps = SweepService(
        sessions=runtime.sessions,
        units=runtime.units,
        plans=settings.plans,
        every=timedelta(seconds=settings.sweep_every_s),
        meter=runtime.telemetry.meter("quittance.retention"),
    )
    runtime.consume(create_routes(service=service, sweeps=sweeps, telemetry=runtime.telemetry))

    async def watch_deadlines() -> None:
        await service.run_deadline_watch(settings.deadline_check_interval_s)

    async def schedule_sweeps() -> None:
        await sweeps.run_schedule(settings.sweep_check_interval_s)

    operator_token = settings.operator_token.get_secret_value()
    return create_consumer_app(
        runtime,
        background=[watch_deadlines, schedule_sweeps],
        routes=[
            *saga_routes(service, operator_token),
            *sweep_routes(sweeps, operator_token),
            *plan_routes(settings.plans),
            *export_routes(service),
            *certificate_routes(service),
        ],
        health_checks=[sagas_health(service)],
    )


def migrate(settings: RetentionSettings | None = None) -> None:
    """Bring retention's database to the newest schema."""
    upgrade_database(MIGRATIONS_DIR, (settings or RetentionSettings()).database_url)


if __name__ == "__main__":
    service_cli("retention", port=8002, migrate=migrate, tls=lambda: RetentionSettings().tls)
