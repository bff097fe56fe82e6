"""Notifications' entry points: `create_app(settings)` and
`python -m notifications.main migrate|serve`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from faststream.asgi import AsgiFastStream

from notifications.data_map import DATA_MAP
from notifications.handlers import create_routes
from notifications.mailer import SmtpMailer
from notifications.services import NotificationsService
from notifications.settings import NotificationsSettings
from shared.migrations import upgrade_database
from shared.runtime import consumed_and_produced, create_consumer_app, create_runtime
from shared.serving import service_cli
from shared.telemetry import Telemetry

SERVICE = "notifications"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def assemble(
    settings: NotificationsSettings | None = None,
    *,
    telemetry: Telemetry | None = None,
    clock: Callable[[], datetime] | None = None,
) -> tuple[AsgiFastStream, NotificationsService]:
    """Build the notifications app and the service it runs (tests drive its clock)."""
    settings = settings or NotificationsSettings()
    runtime = create_runtime(
        SERVICE, settings, topics=consumed_and_produced(SERVICE), telemetry=telemetry
    )
    service = NotificationsService(
        sessions=runtime.sessions,
        units=runtime.units,
        mailer=SmtpMailer(settings.smtp, runtime.telemetry),
        export_store=runtime.store,
        settings=settings,
        clock=clock or (lambda: datetime.now(UTC)),
        meter=runtime.telemetry.meter("quittance.notifications"),
    )
    participant = runtime.participant(DATA_MAP)
    runtime.consume(
        create_routes(service=service, participant=participant, telemetry=runtime.telemetry)
    )
    app = create_consumer_app(
        runtime, background=[service.run_sending, service.run_sweeper, service.run_reminders]
    )
    return app, service


def create_app(
    settings: NotificationsSettings | None = None, *, telemetry: Telemetry | None = None
) -> AsgiFastStream:
    """Build the notifications app: subscribers, outbox relay, email sweeper, reminders."""
    return assemble(settings, telemetry=telemetry)[0]


def migrate(settings: NotificationsSettings | None = None) -> None:
    """Bring notifications' database to the newest schema."""
    upgrade_database(MIGRATIONS_DIR, (settings or NotificationsSettings()).database_url)


if __name__ == "__main__":
    service_cli(
        "notifications", port=8001, migrate=migrate, tls=lambda: NotificationsSettings().tls
    )
