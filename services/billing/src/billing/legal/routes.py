"""Routes of legal holds and disclosures: legal staff only (LAW)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing.auth.policy import LegalStaff
from billing.dependencies import ServicesDep
from billing.legal.models import (
    LegalDisclosureCreate,
    LegalDisclosurePublic,
    LegalHoldCreate,
    LegalHoldPublic,
    LegalHoldRelease,
)
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND

router = APIRouter(tags=["legal"], responses={**ANY_ROUTE, **AUTHENTICATED})


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


@router.post("/staff/legal-disclosures", status_code=201, response_model=LegalDisclosurePublic)
async def record_legal_disclosure(
    body: LegalDisclosureCreate, principal: LegalStaff, services: ServicesDep
) -> LegalDisclosurePublic:
    """Record that an account's data was given to an outside party because the law required
    it: what, to whom, under which basis. It is a data access in the account's audit trail."""
    disclosure = await services.legal_disclosures.record(principal=principal, request=body)
    return LegalDisclosurePublic.model_validate(disclosure)


@router.get("/staff/legal-disclosures", response_model=list[LegalDisclosurePublic])
async def list_legal_disclosures(
    principal: LegalStaff,
    services: ServicesDep,
    account_id: Annotated[UUID | None, Query(description="Only this account's.")] = None,
) -> list[LegalDisclosurePublic]:
    """Legal disclosures, newest first."""
    disclosures = await services.legal_disclosures.list(account_id=account_id)
    return [LegalDisclosurePublic.model_validate(item) for item in disclosures]
