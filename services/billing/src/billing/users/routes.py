"""Routes of an account's users: the team, invitations, roles, removal, the owner's handover."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from billing.accounts.models import OwnDetailsChange
from billing.auth.policy import Administrator, AnyUser, Owner
from billing.dependencies import ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND, THROTTLED
from billing.users.models import (
    InvitationAcceptance,
    OwnerHandover,
    RoleChange,
    TeamMember,
    UserInvite,
)

router = APIRouter(tags=["users"], responses=ANY_ROUTE)


@router.get("/users", response_model=list[TeamMember], responses=AUTHENTICATED)
async def list_users(principal: AnyUser, services: ServicesDep) -> list[TeamMember]:
    """The account's users, those invited included."""
    return [TeamMember.model_validate(u) for u in await services.users.list(principal=principal)]


@router.post(
    "/users",
    status_code=201,
    response_model=TeamMember,
    responses={**AUTHENTICATED, **CONFLICT},
)
async def invite_user(
    body: UserInvite, principal: Administrator, services: ServicesDep
) -> TeamMember:
    """Invite a colleague: they are emailed a code to choose their password with."""
    return TeamMember.model_validate(await services.users.invite(principal=principal, request=body))


@router.post("/invitations/accept", status_code=204, response_class=Response)
async def accept_invitation(body: InvitationAcceptance, services: ServicesDep) -> Response:
    """Accept an invitation by choosing a password; then sign in."""
    await services.users.accept(token=body.token, password=body.password)
    return Response(status_code=204)


@router.patch(
    "/users/me",
    response_model=TeamMember,
    responses={**AUTHENTICATED, **CONFLICT, **THROTTLED},
)
async def change_own_details(
    body: OwnDetailsChange, principal: AnyUser, services: ServicesDep
) -> TeamMember:
    """Correct your name or email; a new email needs your password, and the old one is told."""
    return TeamMember.model_validate(
        await services.users.change_own_details(principal=principal, change=body)
    )


@router.patch(
    "/users/{user_id:uuid}",
    response_model=TeamMember,
    responses={**AUTHENTICATED, **NOT_FOUND, **CONFLICT},
)
async def change_user_role(
    user_id: UUID, body: RoleChange, principal: Administrator, services: ServicesDep
) -> TeamMember:
    """Give a user another role."""
    return TeamMember.model_validate(
        await services.users.change_role(principal=principal, user_id=user_id, role=body.role)
    )


@router.delete(
    "/users/{user_id:uuid}",
    status_code=204,
    response_class=Response,
    responses={**AUTHENTICATED, **NOT_FOUND, **CONFLICT},
)
async def remove_user(user_id: UUID, principal: Administrator, services: ServicesDep) -> Response:
    """Remove a user: their sessions end and their API keys stop working at once."""
    await services.users.remove(principal=principal, user_id=user_id)
    return Response(status_code=204)


@router.post(
    "/account/owner",
    response_model=TeamMember,
    responses={**AUTHENTICATED, **NOT_FOUND, **THROTTLED},
)
async def hand_over_account(
    body: OwnerHandover, principal: Owner, services: ServicesDep
) -> TeamMember:
    """Hand the account over to another user, confirmed by the owner's password."""
    return TeamMember.model_validate(
        await services.users.hand_over(
            principal=principal, user_id=body.user_id, password=body.password, code=body.code
        )
    )
