"""Routes of termination."""

from __future__ import annotations

from fastapi import APIRouter

from billing.accounts.models import AccountPublic, TerminationRequest
from billing.auth.policy import Owner
from billing.dependencies import ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, THROTTLED

router = APIRouter(tags=["accounts"], responses=ANY_ROUTE)


@router.post(
    "/account/termination",
    response_model=AccountPublic,
    status_code=202,
    responses={**AUTHENTICATED, **CONFLICT, **THROTTLED},
)
async def terminate_account(
    body: TerminationRequest, principal: Owner, services: ServicesDep
) -> AccountPublic:
    """Terminate the contract: the account turns read-only, the export is emailed to the owner,
    then every record is purged. The owner's password confirms it."""
    return AccountPublic.model_validate(
        await services.termination.terminate(
            principal=principal, password=body.password, code=body.code
        )
    )
