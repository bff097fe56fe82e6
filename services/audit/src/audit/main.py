"""Audit's entry points: `create_app(settings)` and `python -m audit.main migrate`."""

from __future__ import annotations

import sys
from pathlib import Path

from faststream.asgi import AsgiFastStream

from audit.data_map import DATA_MAP
from audit.handlers import create_routes
from audit.services import AuditService
from audit.settings import AuditSettings
from shared.migrations import upgrade_database
from shared.runtime import consumed_and_produced, create_consumer_app, create_runtime
from shared.telemetry import Telemetry

SERVICE = "audit"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(
    settings: AuditSettings | None = None, *, telemetry: Telemetry | None = None
) -> AsgiFastStream:
    """Build the audit app: subscribers and outbox relay."""
    settings = settings or AuditSettings()
    runtime = create_runtime(
        SERVICE, settings, topics=consumed_and_produced(SERVICE), telemetry=telemetry
    )
    service = AuditService(sessions=runtime.sessions)
    participant = runtime.participant(DATA_MAP)
    runtime.consume(
        create_routes(service=service, participant=participant, telemetry=runtime.telemetry)
    )
    return create_consumer_app(runtime)


def migrate(settings: AuditSettings | None = None) -> None:
    """Bring audit's database to the newest schema."""
    upgrade_database(MIGRATIONS_DIR, (settings or AuditSettings()).database_url)


if __name__ == "__main__":
    if sys.argv[1:] != ["migrate"]:
        sys.exit("usage: python -m audit.main migrate  (serve with uvicorn --factory)")
    migrate()
