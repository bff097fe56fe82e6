"""Routes of API keys: made with scopes and an expiry, listed with their last use, revoked."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from billing.auth.models import ApiKeyCreate, ApiKeyMade, ApiKeyPublic
from billing.auth.policy import AnyUser
from billing.dependencies import ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED, NOT_FOUND

router = APIRouter(tags=["api keys"], responses={**ANY_ROUTE, **AUTHENTICATED})


@router.post("/api-keys", status_code=201, response_model=ApiKeyMade)
async def create_api_key(
    body: ApiKeyCreate, principal: AnyUser, services: ServicesDep
) -> ApiKeyMade:
    """A key for a script or an integration, acting as you within its scopes; shown once."""
    key, secret = await services.auth.create_key(principal=principal, request=body)
    return ApiKeyMade.model_validate(
        {**ApiKeyPublic.model_validate(key).model_dump(), "api_key": secret}
    )


@router.get("/api-keys", response_model=list[ApiKeyPublic])
async def list_api_keys(principal: AnyUser, services: ServicesDep) -> list[ApiKeyPublic]:
    """Your keys, with when each was last used; revoked ones included."""
    return [ApiKeyPublic.model_validate(k) for k in await services.auth.keys(principal=principal)]


@router.post("/api-keys/{key_id}/revoke", response_model=ApiKeyPublic, responses=NOT_FOUND)
async def revoke_api_key(key_id: UUID, principal: AnyUser, services: ServicesDep) -> ApiKeyPublic:
    """Revoke a key at once (an admin may revoke any key of the account)."""
    return ApiKeyPublic.model_validate(
        await services.auth.revoke_key(principal=principal, key_id=key_id)
    )
