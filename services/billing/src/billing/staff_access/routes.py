"""Routes of staff access: the staff (a security admin manages them; they sign in like users),
grants by the account, reads under a grant."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from billing.auth.metadata import request_metadata
from billing.auth.models import StaffSessionPublic
from billing.auth.policy import Administrator, Staff, StaffAdministrator
from billing.auth.routes import set_session_cookie
from billing.auth.sessions import SESSION_COOKIE, csrf_token_for
from billing.customers.models import CustomerPublic
from billing.dependencies import ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND, THROTTLED
from billing.staff_access.domain import StaffRole
from billing.staff_access.models import (
    AccessGrantCreate,
    AccessGrantPublic,
    StaffCreate,
    StaffEnrolment,
    StaffMember,
    StaffPublic,
    StaffRegistered,
    StaffRolesChange,
    StaffSignIn,
)
from shared.contracts import AccessPurpose
from shared.http import links_by_id

router = APIRouter(tags=["staff access"], responses={**ANY_ROUTE, **AUTHENTICATED})


def staff_public(member: StaffMember) -> StaffPublic:
    """A staff member as the API shows them."""
    return StaffPublic(
        id=member.id,
        name=member.name,
        email=member.email,
        roles=[StaffRole(role) for role in member.roles],
        enrolled=member.password_hash is not None,
    )


def _registered(member: StaffMember, code: str) -> StaffRegistered:
    """A staff member with the enrolment code they were just given (shown this once)."""
    assert member.enrolment_expires_at is not None
    return StaffRegistered(
        staff=staff_public(member),
        enrolment_code=code,
        enrolment_expires_at=member.enrolment_expires_at,
    )


@router.post("/staff", status_code=201, response_model=StaffRegistered, responses=CONFLICT)
async def add_staff(
    body: StaffCreate, principal: StaffAdministrator, services: ServicesDep
) -> StaffRegistered:
    """Add a staff member with roles; hand them the enrolment code (shown once)."""
    return _registered(*await services.staff.add(request=body))


@router.get("/staff", response_model=list[StaffPublic])
async def list_staff(principal: StaffAdministrator, services: ServicesDep) -> list[StaffPublic]:
    """Every current staff member, with their roles."""
    return [staff_public(member) for member in await services.staff.members()]


@router.patch(
    "/staff/{staff_id:uuid}", response_model=StaffPublic, responses={**NOT_FOUND, **CONFLICT}
)
async def change_staff_roles(
    staff_id: UUID, body: StaffRolesChange, principal: StaffAdministrator, services: ServicesDep
) -> StaffPublic:
    """Give a staff member other roles; they apply from their next request."""
    member = await services.staff.change_roles(
        principal=principal, staff_id=staff_id, roles=body.roles
    )
    return staff_public(member)


@router.delete(
    "/staff/{staff_id:uuid}",
    status_code=204,
    response_class=Response,
    responses={**NOT_FOUND, **CONFLICT},
)
async def remove_staff(
    staff_id: UUID, principal: StaffAdministrator, services: ServicesDep
) -> Response:
    """Remove a staff member: their sessions end at once."""
    await services.staff.remove(principal=principal, staff_id=staff_id)
    return Response(status_code=204)


@router.post(
    "/staff/{staff_id:uuid}/enrolment",
    status_code=201,
    response_model=StaffRegistered,
    responses={**NOT_FOUND, **CONFLICT},
)
async def reenrol_staff(
    staff_id: UUID, principal: StaffAdministrator, services: ServicesDep
) -> StaffRegistered:
    """A new enrolment code for a staff member who lost their password; theirs stops working."""
    return _registered(*await services.staff.reenrol(principal=principal, staff_id=staff_id))


@router.post("/staff/enrolment", status_code=204, response_class=Response)
async def enrol_staff(body: StaffEnrolment, services: ServicesDep) -> Response:
    """Choose your password with the enrolment code; then sign in."""
    await services.staff.enrol(email=str(body.email), code=body.code, password=body.password)
    return Response(status_code=204)


@router.get("/staff/session", response_model=StaffSessionPublic)
async def current_staff_session(principal: Staff, request: Request) -> StaffSessionPublic:
    """The staff member's signed-in session, with its CSRF token (for a page that was reloaded)."""
    token = request.cookies.get(SESSION_COOKIE)
    # Staff sign in only with the cookie: a staff principal always came with one.
    assert principal.staff_id is not None
    assert token is not None
    return StaffSessionPublic(
        staff_id=principal.staff_id,
        name=principal.name,
        roles=sorted(principal.staff_roles),
        csrf_token=csrf_token_for(token),
    )


@router.post(
    "/staff/sessions",
    status_code=201,
    response_model=StaffSessionPublic,
    responses=THROTTLED,
)
async def sign_in_staff(
    body: StaffSignIn, request: Request, response: Response, services: ServicesDep
) -> StaffSessionPublic:
    """A staff member signs in: the same one cookie, the CSRF token in the body."""
    signed_in = await services.sessions.sign_in_staff(
        email=str(body.email), password=body.password, request=request_metadata(request)
    )
    set_session_cookie(response, signed_in.token, services.sessions.absolute_s)
    return StaffSessionPublic(
        staff_id=signed_in.staff_id,
        name=signed_in.name,
        roles=sorted(signed_in.roles),
        csrf_token=signed_in.csrf_token,
        expires_at=signed_in.expires_at,
    )


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
    return CustomerPublic(**customer)
