"""FastAPI dependencies: billing's services and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import Scope

from billing.accounts.service import AccountService
from billing.audit_access.service import AuditTokenService
from billing.auth.models import Principal
from billing.auth.second_factor import SecondFactor
from billing.auth.service import AuthService
from billing.auth.sessions import CSRF_HEADER, SESSION_COOKIE, SessionService
from billing.credit_notes.service import CreditNoteService
from billing.customers.service import CustomerService
from billing.deliveries.service import DeliveryService
from billing.errors import BillingError, NotAuthenticatedError
from billing.integrations.service import IntegrationService
from billing.invoices.service import InvoiceService
from billing.legal.service import LegalDisclosureService, LegalHoldService
from billing.payments.service import PaymentService
from billing.rectification.service import ChangeService
from billing.recurring.service import RecurringService
from billing.settings import BillingSettings
from billing.staff_access.service import StaffAccessService, StaffService
from billing.statements.service import StatementService
from billing.termination.service import TerminationService
from billing.users.service import UserService
from billing.webhooks.service import WebhookService
from shared.idempotency import Caller, Identify

MAX_OFFSET = 1_000_000  # past this, a client pages by filter; 2**63 once answered a 500

_bearer = HTTPBearer(
    auto_error=False, description="An API key from account opening or staff registration."
)
_session = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=f"The session cookie set by signing in; changes also need {CSRF_HEADER}.",
)


@dataclass(frozen=True)
class Services:
    """Billing's use cases, one service per domain."""

    auth: AuthService
    audit_tokens: AuditTokenService
    sessions: SessionService
    second_factor: SecondFactor
    accounts: AccountService
    changes: ChangeService
    credit_notes: CreditNoteService
    customers: CustomerService
    deliveries: DeliveryService
    integrations: IntegrationService
    legal_holds: LegalHoldService
    legal_disclosures: LegalDisclosureService
    invoices: InvoiceService
    payments: PaymentService
    recurring: RecurringService
    staff: StaffService
    staff_access: StaffAccessService
    statements: StatementService
    termination: TerminationService
    users: UserService
    webhooks: WebhookService


# Every dependency is async: FastAPI runs a plain function in a worker thread per request.
async def get_services(request: Request) -> Services:
    """The app's services."""
    services: Services = request.app.state.services
    return services


async def get_settings(request: Request) -> BillingSettings:
    """The app's settings."""
    settings: BillingSettings = request.app.state.settings
    return settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[BillingSettings, Depends(get_settings)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


SessionCookieDep = Annotated[str | None, Depends(_session)]


async def _principal_from(
    services: Services,
    request: HTTPConnection,
    credentials: HTTPAuthorizationCredentials | None,
    session_token: str | None,
) -> Principal:
    if credentials is not None:
        return await services.auth.authenticate(api_key=credentials.credentials)
    if session_token is not None:
        return await services.sessions.authenticate(
            token=session_token,
            method=request.scope["method"],
            csrf_token=request.headers.get(CSRF_HEADER),
        )
    raise NotAuthenticatedError("sign in, or send an API key as 'Authorization: Bearer <key>'")


async def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: CredentialsDep,
    session_token: SessionCookieDep,
) -> Principal:
    """The caller behind the bearer API key, or else behind the session cookie."""
    return await _principal_from(services, request, credentials, session_token)


def caller_identifier(services: Services) -> Identify:
    """How the idempotency middleware learns whose key a request uses: the same
    authentication as every route's, run before the route (shared.idempotency)."""

    async def identify(scope: Scope) -> Caller | None:
        connection = HTTPConnection(scope)
        credentials, session_token = await _bearer(connection), await _session(connection)
        if credentials is None and session_token is None:
            return None
        try:
            principal = await _principal_from(services, connection, credentials, session_token)
        except BillingError:
            return None  # the route refuses it the same way, and nothing is kept
        if principal.kind == "staff":
            return Caller(identity=f"staff:{principal.staff_id}", account_id=None)
        if principal.integration_id is not None:
            return Caller(
                identity=f"integration:{principal.integration_id}",
                account_id=principal.account_id,
            )
        return Caller(identity=f"user:{principal.user_id}", account_id=principal.account_id)

    return identify


PrincipalDep = Annotated[Principal, Depends(get_principal)]
