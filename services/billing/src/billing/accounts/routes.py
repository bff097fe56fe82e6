"""Routes of accounts: open one, read your own."""

from __future__ import annotations

from fastapi import APIRouter

from billing.accounts.models import (
    AccountCreate,
    AccountDetailsChange,
    AccountOpened,
    AccountPublic,
    UserPublic,
)
from billing.auth.policy import Administrator, AnyUser
from billing.dependencies import ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED

router = APIRouter(tags=["accounts"], responses=ANY_ROUTE)


@router.post("/accounts", status_code=201, response_model=AccountOpened)
async def open_account(body: AccountCreate, services: ServicesDep) -> AccountOpened:
    """Open an account with its owner; the owner's API key is shown once."""
    account, owner, api_key = await services.accounts.open(request=body)
    return AccountOpened(
        account=AccountPublic.model_validate(account),
        owner=UserPublic.model_validate(owner),
        api_key=api_key,
    )


@router.get("/account", response_model=AccountPublic, responses=AUTHENTICATED)
async def get_account(principal: AnyUser, services: ServicesDep) -> AccountPublic:
    """The caller's account."""
    return AccountPublic.model_validate(await services.accounts.get(principal=principal))


@router.patch("/account", response_model=AccountPublic, responses=AUTHENTICATED)
async def change_account_details(
    body: AccountDetailsChange, principal: Administrator, services: ServicesDep
) -> AccountPublic:
    """Correct the company's name and billing details: the next invoice prints them."""
    return AccountPublic.model_validate(
        await services.accounts.change_details(principal=principal, change=body)
    )
