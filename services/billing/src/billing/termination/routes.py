"""Routes of termination."""

from __future__ import annotations

from fastapi import APIRouter

from billing.accounts.models import AccountPublic
from billing.dependencies import PrincipalDep, ServicesDep

router = APIRouter(tags=["accounts"])


@router.post("/account/termination", response_model=AccountPublic, status_code=202)
async def terminate_account(principal: PrincipalDep, services: ServicesDep) -> AccountPublic:
    """Terminate the contract: the export is emailed to the owner, then every record is purged."""
    return AccountPublic.model_validate(await services.termination.terminate(principal=principal))
