"""Routes of integrations."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from billing.auth.policy import Administrator
from billing.dependencies import ServicesDep
from billing.integrations.models import (
    Integration,
    IntegrationCreate,
    IntegrationEnabled,
    IntegrationPublic,
)
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND

router = APIRouter(tags=["integrations"], responses={**ANY_ROUTE, **AUTHENTICATED})


def _public(integration: Integration) -> IntegrationPublic:
    return IntegrationPublic(
        id=integration.id,
        name=integration.name,
        scopes=integration.scopes,
        enabled_by_user_id=integration.enabled_by_user_id,
        created_at=integration.created_at,
        revoked_at=integration.revoked_at,
    )


@router.post(
    "/integrations", status_code=201, response_model=IntegrationEnabled, responses=CONFLICT
)
async def enable_integration(
    body: IntegrationCreate, principal: Administrator, services: ServicesDep
) -> IntegrationEnabled:
    """Let a third party in with an API key of its own, limited to the scopes given
    (INTEGRATIONS). Every read it makes is recorded in the account's audit trail as a data
    access with purpose `integration`, refused ones too."""
    integration, api_key = await services.integrations.enable(principal=principal, request=body)
    return IntegrationEnabled(integration=_public(integration), api_key=api_key)


@router.get("/integrations", response_model=list[IntegrationPublic])
async def list_integrations(
    principal: Administrator, services: ServicesDep
) -> list[IntegrationPublic]:
    """The account's integrations, revoked ones too."""
    return [_public(i) for i in await services.integrations.list(principal=principal)]


@router.delete(
    "/integrations/{integration_id}", response_model=IntegrationPublic, responses=NOT_FOUND
)
async def revoke_integration(
    integration_id: UUID, principal: Administrator, services: ServicesDep
) -> IntegrationPublic:
    """Shut the third party out, at once."""
    integration = await services.integrations.revoke(
        principal=principal, integration_id=integration_id
    )
    return _public(integration)
