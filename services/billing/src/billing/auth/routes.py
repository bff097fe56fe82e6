"""Routes of signing in and out: one session cookie, nothing else stored in the browser."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response

from billing.auth.metadata import request_metadata
from billing.auth.models import (
    PasswordChange,
    PasswordConfirmation,
    Principal,
    RecoveryCodes,
    SecondFactorConfirmation,
    SecondFactorStarted,
    SessionListed,
    SessionPublic,
    SignInRequest,
)
from billing.auth.policy import Administrator, AnyUser, OwnSession, Staff
from billing.auth.sessions import SESSION_COOKIE, csrf_token_for
from billing.dependencies import Services, ServicesDep
from billing.errors import NotFoundError
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND, THROTTLED

router = APIRouter(tags=["sign-in"], responses=ANY_ROUTE)


def set_session_cookie(response: Response, token: str, max_age_s: int) -> None:
    # Strict: the cookie never rides on a request another site started.
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


@router.post(
    "/sessions",
    status_code=201,
    response_model=SessionPublic,
    responses={**AUTHENTICATED, **THROTTLED},
)
async def sign_in(
    body: SignInRequest, request: Request, response: Response, services: ServicesDep
) -> SessionPublic:
    """Sign in: the session's id is set as the one cookie; the CSRF token is in the body."""
    signed_in = await services.sessions.sign_in(
        email=str(body.email),
        password=body.password,
        account_id=body.account_id,
        request=request_metadata(request),
        code=body.code,
        recovery_code=body.recovery_code,
    )
    set_session_cookie(response, signed_in.token, services.sessions.absolute_s)
    return SessionPublic(
        user_id=signed_in.user_id,
        account_id=signed_in.account_id,
        role=signed_in.role,
        csrf_token=signed_in.csrf_token,
        expires_at=signed_in.expires_at,
    )


@router.get("/session", response_model=SessionPublic, responses={**AUTHENTICATED, **NOT_FOUND})
async def current_session(principal: AnyUser, request: Request) -> SessionPublic:
    """The signed-in session, with its CSRF token (for a page that was reloaded)."""
    token = request.cookies.get(SESSION_COOKIE)
    if principal.session_id is None or token is None:
        raise NotFoundError("signed in with an API key, not a session")
    assert principal.account_id is not None
    assert principal.user_id is not None
    assert principal.role is not None
    return SessionPublic(
        user_id=principal.user_id,
        account_id=principal.account_id,
        role=principal.role,
        csrf_token=csrf_token_for(token),
    )


@router.delete(
    "/session", status_code=204, responses={**AUTHENTICATED, **NOT_FOUND}, response_class=Response
)
async def sign_out(principal: OwnSession, services: ServicesDep) -> Response:
    """Sign out: the session ends and the cookie is removed."""
    if principal.session_id is None:
        raise NotFoundError("signed in with an API key, not a session")
    await services.sessions.sign_out(session_id=principal.session_id)
    response = Response(status_code=204)
    _clear_session_cookie(response)
    return response


async def _change_password(
    body: PasswordChange, principal: Principal, services: Services
) -> Response:
    await services.sessions.change_password(
        principal=principal, current=body.current_password, new=body.new_password
    )
    response = Response(status_code=204)
    if principal.session_id is not None:
        _clear_session_cookie(response)
    return response


@router.put(
    "/users/me/password",
    status_code=204,
    responses={**AUTHENTICATED, **THROTTLED},
    response_class=Response,
)
async def change_password(
    body: PasswordChange, principal: AnyUser, services: ServicesDep
) -> Response:
    """Choose a new password; every session of the user ends, this one included."""
    return await _change_password(body, principal, services)


@router.put(
    "/staff/me/password",
    status_code=204,
    responses={**AUTHENTICATED, **THROTTLED},
    response_class=Response,
)
async def change_staff_password(
    body: PasswordChange, principal: Staff, services: ServicesDep
) -> Response:
    """A staff member chooses a new password; every session of theirs ends."""
    return await _change_password(body, principal, services)


@router.get("/sessions", response_model=list[SessionListed], responses=AUTHENTICATED)
async def list_sessions(principal: Administrator, services: ServicesDep) -> list[SessionListed]:
    """The account's signed-in sessions: who, since when, from which address, browser and
    system (kept for security and administration only)."""
    return [
        SessionListed.model_validate(dict(row))
        for row in await services.sessions.live(principal=principal)
    ]


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses={**AUTHENTICATED, **NOT_FOUND},
)
async def end_session(
    session_id: UUID, principal: Administrator, services: ServicesDep
) -> Response:
    """End any session of the account at once."""
    await services.sessions.end(principal=principal, session_id=session_id)
    return Response(status_code=204)


@router.post(
    "/users/me/totp",
    status_code=201,
    response_model=SecondFactorStarted,
    responses={**AUTHENTICATED, **CONFLICT},
)
async def start_second_factor(principal: AnyUser, services: ServicesDep) -> SecondFactorStarted:
    """Set up a second factor: add the secret to an authenticator app, then confirm a code."""
    secret, uri = await services.second_factor.start(principal=principal)
    return SecondFactorStarted(secret=secret, otpauth_uri=uri)


@router.post(
    "/users/me/totp/confirm",
    response_model=RecoveryCodes,
    responses={**AUTHENTICATED, **CONFLICT},
)
async def confirm_second_factor(
    body: SecondFactorConfirmation, principal: AnyUser, services: ServicesDep
) -> RecoveryCodes:
    """Turn the second factor on with a code; the recovery codes are shown this once."""
    codes = await services.second_factor.confirm(principal=principal, code=body.code)
    return RecoveryCodes(recovery_codes=codes)


@router.post(
    "/users/me/totp/disable", status_code=204, response_class=Response, responses=AUTHENTICATED
)
async def disable_second_factor(
    body: PasswordConfirmation, principal: AnyUser, services: ServicesDep
) -> Response:
    """Turn the second factor off, confirmed by the password; the recovery codes go too."""
    await services.second_factor.disable(principal=principal, password=body.password)
    return Response(status_code=204)
