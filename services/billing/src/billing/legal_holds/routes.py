"""Routes of legal holds: legal staff only (LAW)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing.auth.policy import LegalStaff
from billing.dependencies import ServicesDep
from billing.legal_holds.models import LegalHoldCreate, LegalHoldPublic, LegalHoldRelease
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND

router = APIRouter(tags=["legal holds"], responses={**ANY_ROUTE, **AUTHENTICATED})


@router.post("/staff/legal-holds", status_code=201, response_model=LegalHoldPublic)
async def place_legal_hold(
    body: LegalHoldCreate, principal: LegalStaff, services: ServicesDep
) -> LegalHoldPublic:
    """Preserve an account's data: no service purges any of it, a termination included (it
    exports, then waits), until the hold is released or ends. Recorded in the audit trail."""
    hold = await services.legal_holds.place(principal=principal, request=body)
    return LegalHoldPublic.model_validate(hold)


@router.post(
    "/staff/legal-holds/{hold_id}/release",
    response_model=LegalHoldPublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def release_legal_hold(
    hold_id: UUID, body: LegalHoldRelease, principal: LegalStaff, services: ServicesDep
) -> LegalHoldPublic:
    """Release a hold: a termination waiting for it goes on if no other hold stands."""
    hold = await services.legal_holds.release(principal=principal, hold_id=hold_id, request=body)
    return LegalHoldPublic.model_validate(hold)


@router.get("/staff/legal-holds", response_model=list[LegalHoldPublic])
async def list_legal_holds(
    principal: LegalStaff,
    services: ServicesDep,
    account_id: Annotated[UUID | None, Query(description="Only this account's.")] = None,
) -> list[LegalHoldPublic]:
    """Legal holds, newest first."""
    holds = await services.legal_holds.list(account_id=account_id)
    return [LegalHoldPublic.model_validate(hold) for hold in holds]
