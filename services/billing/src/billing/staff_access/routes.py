"""Routes of staff access: register staff (operator), grant access, read under a grant."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from billing.auth.policy import Administrator, Staff
from billing.customers.models import CustomerPublic
from billing.dependencies import ServicesDep, require_operator
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND
from billing.staff_access.models import (
    AccessGrantCreate,
    AccessGrantPublic,
    StaffCreate,
    StaffPublic,
    StaffRegistered,
)
from shared.contracts import AccessPurpose
from shared.http import links_by_id

router = APIRouter(tags=["staff access"], responses={**ANY_ROUTE, **AUTHENTICATED})


@router.post(
    "/staff",
    status_code=201,
    response_model=StaffRegistered,
    dependencies=[Depends(require_operator)],
    responses=CONFLICT,
)
async def register_staff(body: StaffCreate, services: ServicesDep) -> StaffRegistered:
    """Register a named staff member (operator token)."""
    staff, api_key = await services.staff_access.register_staff(request=body)
    return StaffRegistered(staff=StaffPublic.model_validate(staff), api_key=api_key)


@router.post(
    "/access-grants",
    status_code=201,
    response_model=AccessGrantPublic,
    responses=links_by_id(201, "grant_id", "revoke_access_grant"),
)
async def open_access_grant(
    body: AccessGrantCreate, principal: Administrator, services: ServicesDep
) -> AccessGrantPublic:
    """Let a named staff member read this account's data for a purpose until expiry."""
    return AccessGrantPublic.model_validate(
        await services.staff_access.open_grant(principal=principal, request=body)
    )


@router.get("/access-grants", response_model=list[AccessGrantPublic])
async def list_access_grants(
    principal: Administrator, services: ServicesDep
) -> list[AccessGrantPublic]:
    """The account's access grants, newest first, revoked and lapsed ones included."""
    grants = await services.staff_access.grants(principal=principal)
    return [AccessGrantPublic.model_validate(g) for g in grants]


@router.post(
    "/access-grants/{grant_id}/revoke", response_model=AccessGrantPublic, responses=NOT_FOUND
)
async def revoke_access_grant(
    grant_id: UUID, principal: Administrator, services: ServicesDep
) -> AccessGrantPublic:
    """End a grant at once: the next read under it is refused and recorded."""
    return AccessGrantPublic.model_validate(
        await services.staff_access.revoke_grant(principal=principal, grant_id=grant_id)
    )


@router.get(
    "/staff/accounts/{account_id}/customers/{customer_id}",
    response_model=CustomerPublic,
    responses=NOT_FOUND,
)
async def read_customer_as_staff(
    account_id: UUID,
    customer_id: UUID,
    principal: Staff,
    services: ServicesDep,
    purpose: Annotated[AccessPurpose, Query(description="Why the data is read (closed list).")],
) -> CustomerPublic:
    """A staff member reads a customer under a grant; the read is audited."""
    customer = await services.staff_access.read_customer(
        principal=principal, account_id=account_id, customer_id=customer_id, purpose=purpose
    )
    return CustomerPublic.model_validate(customer)
