"""Audit's entry points: `create_app(settings)` and `python -m audit.main migrate|serve`."""

from __future__ import annotations

import os
from pathlib import Path

from faststream.asgi import AsgiFastStream
from opentelemetry.metrics import Meter

from audit.api import audit_routes, report_routes
from audit.data_map import DATA_MAP
from audit.handlers import create_routes
from audit.services import AuditService
from audit.settings import AuditSettings
from shared.db import SessionFactory
from shared.migrations import upgrade_database
from shared.runtime import consumed_and_produced, create_consumer_app, create_runtime
from shared.serving import service_cli
from shared.signing import SigningKey, public_key_from_setting
from shared.telemetry import Telemetry
from shared.tokens import TokenReader
from shared.unit_of_work import UnitsOfWork

SERVICE = "audit"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_service(
    settings: AuditSettings,
    *,
    sessions: SessionFactory,
    units: UnitsOfWork | None = None,
    meter: Meter | None = None,
) -> AuditService:
    """The trail's service from settings (the app's, or the verify command's)."""
    return AuditService(
        sessions=sessions,
        units=units,
        reference_key=settings.reference_key.get_secret_value().encode(),
        signing_key=SigningKey.from_setting(settings.checkpoint_signing_key.get_secret_value()),
        alert_accounts_per_hour=settings.alert_accounts_per_hour,
        verify_processes=settings.verify_processes or os.cpu_count() or 1,
        database_url=settings.database_url,
        meter=meter,
    )


def token_reader(settings: AuditSettings) -> TokenReader:
    """Checks the tokens billing signs for audit."""
    public = public_key_from_setting(settings.billing_token_public_key.get_secret_value())
    return TokenReader(public, audience="audit")


def create_app(
    settings: AuditSettings | None = None, *, telemetry: Telemetry | None = None
) -> AsgiFastStream:
    """Build the audit app: subscribers, outbox relay, checkpoints, the verify API."""
    settings = settings or AuditSettings()
    runtime = create_runtime(
        SERVICE, settings, topics=consumed_and_produced(SERVICE), telemetry=telemetry
    )
    service = create_service(
        settings,
        sessions=runtime.sessions,
        units=runtime.units,
        meter=runtime.telemetry.meter("quittance.audit"),
    )
    participant = runtime.participant(DATA_MAP)
    runtime.consume(
        create_routes(service=service, participant=participant, telemetry=runtime.telemetry)
    )

    async def sign_checkpoints() -> None:
        await service.run_checkpoints(settings.checkpoint_interval_s)

    async def verify_trail() -> None:
        await service.run_verification(settings.verify_interval_s)

    return create_consumer_app(
        runtime,
        background=[sign_checkpoints, verify_trail],
        routes=[
            *audit_routes(service, settings.operator_token.get_secret_value()),
            *report_routes(service, token_reader(settings)),
        ],
    )


def migrate(settings: AuditSettings | None = None) -> None:
    """Bring audit's database to the newest schema."""
    upgrade_database(MIGRATIONS_DIR, (settings or AuditSettings()).database_url)


if __name__ == "__main__":
    service_cli("audit", port=8003, migrate=migrate, tls=lambda: AuditSettings().tls)
