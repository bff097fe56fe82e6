"""FastAPI dependencies: the service and the authenticated caller."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billing.services import BillingService, NotAuthenticatedError, Principal
from billing.settings import BillingSettings

_bearer = HTTPBearer(
    auto_error=False, description="An API key from account opening or staff registration."
)


def get_service(request: Request) -> BillingService:
    """The app's billing service."""
    service: BillingService = request.app.state.service
    return service


def get_settings(request: Request) -> BillingSettings:
    """The app's settings."""
    settings: BillingSettings = request.app.state.settings
    return settings


ServiceDep = Annotated[BillingService, Depends(get_service)]
SettingsDep = Annotated[BillingSettings, Depends(get_settings)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_principal(service: ServiceDep, credentials: CredentialsDep) -> Principal:
    """The caller behind the bearer API key."""
    if credentials is None:
        raise NotAuthenticatedError("send an API key as 'Authorization: Bearer <key>'")
    return await service.authenticate(api_key=credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_operator(settings: SettingsDep, credentials: CredentialsDep) -> None:
    """Only the operator token may register staff."""
    expected = settings.operator_token.get_secret_value().encode()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise NotAuthenticatedError("the operator token is required")
