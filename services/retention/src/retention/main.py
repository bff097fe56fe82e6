"""Retention's entry points: `create_app(settings)` and `python -m retention.main migrate`."""

from __future__ import annotations

import sys
from pathlib import Path

from faststream.asgi import AsgiFastStream

from retention.handlers import create_routes
from retention.services import RetentionService
from retention.settings import RetentionSettings
from shared.export_store import ExportStore
from shared.migrations import upgrade_database
from shared.runtime import consumed_and_produced, create_consumer_app, create_runtime
from shared.telemetry import Telemetry

SERVICE = "retention"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(
    settings: RetentionSettings | None = None, *, telemetry: Telemetry | None = None
) -> AsgiFastStream:
    """Build the retention app: the termination saga's subscribers and outbox relay."""
    settings = settings or RetentionSettings()
    runtime = create_runtime(
        SERVICE, settings, topics=consumed_and_produced(SERVICE), telemetry=telemetry
    )
    service = RetentionService(
        sessions=runtime.sessions,
        export_store=ExportStore(settings.export_store_path),
        participants=settings.participants,
        certificate_key=settings.certificate_key.get_secret_value().encode(),
    )
    runtime.consume(create_routes(service=service, telemetry=runtime.telemetry))
    return create_consumer_app(runtime)


def migrate(settings: RetentionSettings | None = None) -> None:
    """Bring retention's database to the newest schema."""
    upgrade_database(MIGRATIONS_DIR, (settings or RetentionSettings()).database_url)


if __name__ == "__main__":
    if sys.argv[1:] != ["migrate"]:
        sys.exit("usage: python -m retention.main migrate  (serve with uvicorn --factory)")
    migrate()
