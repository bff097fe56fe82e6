"""Billing's entry points: `create_app(settings)` and `python -m billing.main migrate|serve`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from billing import operations
from billing.accounts import routes as accounts
from billing.accounts.service import AccountService
from billing.audit_access import routes as audit_access
from billing.audit_access.service import AuditTokenService
from billing.auth import keys as api_keys
from billing.auth import routes as sign_in
from billing.auth.location import create_locator
from billing.auth.retention import RequestMetadataRetention
from billing.auth.second_factor import IdentityCheck, SecondFactor
from billing.auth.service import AuthService
from billing.auth.sessions import SessionService
from billing.credit_notes import routes as credit_notes
from billing.credit_notes.service import CreditNoteService
from billing.customers import routes as customers
from billing.customers.service import CustomerService
from billing.data_map import DATA_MAP
from billing.deliveries import routes as deliveries
from billing.deliveries.service import DeliveryService
from billing.dependencies import Services, caller_identifier
from billing.errors import ConflictError
from billing.handlers import create_routes
from billing.integrations import routes as integrations
from billing.integrations.service import IntegrationService
from billing.invoices import routes as invoices
from billing.invoices.service import InvoiceService
from billing.legal import routes as legal
from billing.legal.service import LegalDisclosureService, LegalHoldService
from billing.payments import routes as payments
from billing.payments.factory import create_gateway
from billing.payments.service import PaymentService
from billing.problems import install_problem_handlers
from billing.rectification import routes as rectification
from billing.rectification.service import ChangeService
from billing.recurring import routes as recurring
from billing.recurring.service import RecurringService
from billing.settings import BillingSettings
from billing.staff_access import routes as staff_access
from billing.staff_access.domain import StaffRole
from billing.staff_access.models import StaffCreate
from billing.staff_access.service import StaffAccessService, StaffService
from billing.statements import routes as statements
from billing.statements.monthly import MonthlyStatements
from billing.statements.service import StatementService
from billing.termination import routes as termination
from billing.termination.service import TerminationService
from billing.users import routes as users
from billing.users.service import UserService
from billing.webhooks import routes as webhooks
from billing.webhooks.dispatcher import WebhookDispatcher
from billing.webhooks.service import WebhookService
from shared.http import harden_api, mount_offline_docs, operation_id_from_name
from shared.idempotency import IdempotencyMiddleware, sweep_idempotency_records_forever
from shared.migrations import upgrade_database
from shared.runtime import consumed_and_produced, create_runtime, operator_routes
from shared.serving import serve, serve_arguments
from shared.signing import SigningKey
from shared.telemetry import UNOBSERVED_PATHS, NamedRoute, RequestTelemetryMiddleware, Telemetry

SERVICE = "billing"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_app(
    settings: BillingSettings | None = None, *, telemetry: Telemetry | None = None
) -> FastAPI:
    """Build the billing app; the lifespan connects the broker and starts the outbox relay."""
    settings = settings or BillingSettings()
    runtime = create_runtime(
        SERVICE, settings, topics=consumed_and_produced(SERVICE), telemetry=telemetry
    )
    sessions, units = runtime.sessions, runtime.units
    second_factor = SecondFactor(engine=runtime.engine, keys=runtime.keys)
    locator = create_locator(settings.geoip_database)
    identity = IdentityCheck(
        engine=runtime.engine,
        second_factor=second_factor,
        failures_per_user=settings.sign_in_failures_per_user,
        window_minutes=settings.sign_in_throttle_minutes,
    )
    gateway = create_gateway(settings.payments)
    services = Services(
        auth=AuthService(engine=runtime.engine, sessions=sessions, units=units),
        audit_tokens=AuditTokenService(
            key=SigningKey.from_setting(settings.audit_token_signing_key.get_secret_value()),
            ttl_s=settings.audit_token_ttl_s,
            audit_url=settings.audit_url,
        ),
        sessions=SessionService(
            engine=runtime.engine,
            units=units,
            second_factor=second_factor,
            settings=settings,
            locator=locator,
        ),
        second_factor=second_factor,
        accounts=AccountService(sessions=sessions, units=units),
        changes=ChangeService(sessions=sessions),
        credit_notes=CreditNoteService(sessions=sessions, units=units),
        customers=CustomerService(engine=runtime.engine, sessions=sessions, units=units),
        deliveries=DeliveryService(sessions=sessions),
        legal_holds=LegalHoldService(sessions=sessions, units=units),
        legal_disclosures=LegalDisclosureService(sessions=sessions, units=units),
        integrations=IntegrationService(sessions=sessions, units=units),
        invoices=InvoiceService(sessions=sessions, units=units),
        payments=PaymentService(
            sessions=sessions,
            units=units,
            gateway=gateway,
            return_url=settings.payments.return_url,
        ),
        recurring=RecurringService(sessions=sessions, units=units),
        staff=StaffService(sessions=sessions, units=units),
        staff_access=StaffAccessService(
            sessions=sessions, units=units, max_grant_hours=settings.max_grant_hours
        ),
        statements=StatementService(engine=runtime.engine),
        termination=TerminationService(units=units, identity=identity),
        users=UserService(sessions=sessions, units=units, identity=identity),
        webhooks=WebhookService(
            sessions=sessions, units=units, keys=runtime.keys, settings=settings.webhooks
        ),
    )
    dispatcher = WebhookDispatcher(
        engine=runtime.engine, keys=runtime.keys, settings=settings.webhooks
    )
    runtime.background.append(dispatcher.run_forever)
    runtime.background.append(
        lambda: services.recurring.run_forever(interval_s=settings.recurring_interval_s)
    )
    monthly = MonthlyStatements(engine=runtime.engine, units=units, statements=services.statements)
    runtime.background.append(lambda: monthly.run_forever(interval_s=settings.statement_interval_s))
    retention = RequestMetadataRetention(
        engine=runtime.engine, interval_s=settings.housekeeping_interval_s
    )
    runtime.background.append(retention.run)
    runtime.background.append(
        lambda: sweep_idempotency_records_forever(
            runtime.engine, interval_s=settings.housekeeping_interval_s
        )
    )
    participant = runtime.participant(DATA_MAP)
    runtime.consume(create_routes(participant=participant, telemetry=runtime.telemetry))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()
        locator.close()
        if gateway is not None:
            await gateway.close()
        await dispatcher.close()

    app = FastAPI(
        title="Quittance billing",
        version="0.1.0",
        lifespan=lifespan,
        description=(
            "The public billing API. Errors are RFC 9457 problem details. Every POST takes an "
            "optional `Idempotency-Key` header (1 to 255 visible ASCII characters, a UUID for "
            "example): a retry with the same key and the same request gets the first answer, "
            "marked `Idempotent-Replayed: true`, for 24 hours; the same key with another "
            "request answers 422, and while the first is still running, 409."
        ),
        docs_url=None,  # served offline below, from the installed package, under a CSP
        redoc_url=None,
        generate_unique_id_function=operation_id_from_name,
    )
    app.state.settings = settings
    app.state.services = services
    app.state.engine = runtime.engine
    app.state.broker = runtime.broker
    app.state.telemetry = runtime.telemetry
    app.state.runtime = runtime
    app.state.monthly_statements = monthly
    install_problem_handlers(app)
    # Inside the edge's checks: a refused request (too large, a card number) claims no key.
    app.add_middleware(
        IdempotencyMiddleware, engine=runtime.engine, identify=caller_identifier(services)
    )
    harden_api(app, max_body_bytes=settings.max_body_bytes)
    mount_offline_docs(app)
    for domain in (
        accounts,
        rectification,
        sign_in,
        api_keys,
        users,
        termination,
        customers,
        invoices,
        credit_notes,
        recurring,
        payments,
        statements,
        staff_access,
        webhooks,
        integrations,
        deliveries,
        legal,
        audit_access,
    ):
        app.include_router(domain.router)
    app.include_router(operations.router)
    for path, handler in operator_routes(runtime):
        named: Any = NamedRoute(path, handler)  # an ASGI app, which Starlette's typing omits
        app.add_route(path, named, methods=["GET", "HEAD", "POST"], include_in_schema=False)
    app.add_middleware(
        RequestTelemetryMiddleware,
        telemetry=runtime.telemetry,
        excluded_paths=UNOBSERVED_PATHS,
    )
    return app


def migrate(settings: BillingSettings | None = None) -> None:
    """Bring billing's database to the newest schema."""
    upgrade_database(MIGRATIONS_DIR, (settings or BillingSettings()).database_url)


async def add_security_admin(
    settings: BillingSettings, *, name: str, email: str
) -> tuple[str, str]:
    """The first staff member (security role), made on the server, not through the API; their
    id and one-time enrolment code."""
    runtime = create_runtime(SERVICE, settings, topics=())
    try:
        staff = StaffService(sessions=runtime.sessions, units=runtime.units)
        request = StaffCreate(name=name, email=email, roles=[StaffRole.SECURITY])
        member, code = await staff.add(request=request)
    finally:
        await runtime.engine.dispose()
    return str(member.id), code


async def add_staff_on_server(
    settings: BillingSettings, *, name: str, email: str, roles: list[StaffRole]
) -> tuple[str, str, list[str] | None]:
    """A staff member made on the server (whoever runs it holds the database anyway): a new
    one with the roles, or, when the email is a staff member's already, a new enrolment code
    for them (a lost password with no security admin left to re-enrol them: their password
    and sessions go, their name and roles stay, whatever was asked). Their id, one-time
    enrolment code, and the roles they kept when re-enrolled (None when new)."""
    runtime = create_runtime(SERVICE, settings, topics=())
    try:
        staff = StaffService(sessions=runtime.sessions, units=runtime.units)
        existing = await staff.find_by_email(email)
        if existing is not None:
            member, code = await staff.reenrol_on_server(staff_id=existing)
            return str(member.id), code, list(member.roles)
        member, code = await staff.add(request=StaffCreate(name=name, email=email, roles=roles))
    finally:
        await runtime.engine.dispose()
    return str(member.id), code, None


def cli() -> None:
    """`migrate` the database, `serve` the API (HTTPS when a certificate is set), add a
    `security-admin` who then adds the other staff, or a `staff-member` (or re-enrol one) on
    the server."""
    parser = argparse.ArgumentParser(prog="python -m billing.main")
    parser.add_argument("command", choices=["migrate", "serve", "security-admin", "staff-member"])
    serve_arguments(parser, port=8000)
    parser.add_argument("--name", help="security-admin, staff-member: their full name")
    parser.add_argument("--email", help="security-admin, staff-member: their work email")
    parser.add_argument(
        "--role",
        action="append",
        choices=[role.value for role in StaffRole],
        help="staff-member: a role (repeat for more)",
    )
    args = parser.parse_args()
    if args.command == "migrate":
        migrate()
        return
    if args.command == "security-admin":
        if not args.name or not args.email:
            parser.error("security-admin needs --name and --email")
        staff_id, code = asyncio.run(
            add_security_admin(BillingSettings(), name=args.name, email=args.email)
        )
        print(f"staff id: {staff_id}\nenrolment code (shown once): {code}")
        return
    if args.command == "staff-member":
        if not args.name or not args.email or not args.role:
            parser.error("staff-member needs --name, --email and at least one --role")
        try:
            staff_id, code, kept = asyncio.run(
                add_staff_on_server(
                    BillingSettings(),
                    name=args.name,
                    email=args.email,
                    roles=[StaffRole(role) for role in args.role],
                )
            )
        except ConflictError as conflict:  # a removed staff member's address
            parser.exit(1, f"{conflict}: a removed staff member's email is not used again\n")
        if kept is not None:
            print(f"re-enrolled the existing staff member (roles kept: {', '.join(kept)})")
        print(f"staff id: {staff_id}\nenrolment code (shown once): {code}")
        return
    serve(
        "billing.main:create_app",
        BillingSettings().tls,
        host=args.host,
        port=args.port,
        workers=args.workers,
    )


if __name__ == "__main__":
    cli()
