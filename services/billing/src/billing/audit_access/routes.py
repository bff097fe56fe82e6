"""Routes that hand out tokens for audit: the access report (owners and admins) and the trail's
queries (security staff)."""

from __future__ import annotations

from datetime import datetime

import pydantic
from fastapi import APIRouter

from billing.auth.policy import Administrator, StaffAdministrator
from billing.dependencies import ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED
from billing.schemas import Schema

router = APIRouter(tags=["audit access"], responses={**ANY_ROUTE, **AUTHENTICATED})


class AuditToken(Schema):
    """A short-lived token audit accepts, and where to use it."""

    token: str = pydantic.Field(description="Bearer token for audit (a JWT signed Ed25519).")
    expires_at: datetime = pydantic.Field(description="It stops working then.")
    url: str = pydantic.Field(description="Where to use it.")


@router.post("/account/access-report-token", response_model=AuditToken)
async def access_report_token(principal: Administrator, services: ServicesDep) -> AuditToken:
    """A token that opens the account's access report at audit: who read the account's data,
    when, under which purpose and grant (STAFF-ACCESS). Owners and admins only; it opens this
    account's report and no other's, for a few minutes."""
    tokens = services.audit_tokens
    token, expires_at = tokens.for_account_report(principal)
    return AuditToken(token=token, expires_at=expires_at, url=f"{tokens.audit_url}/access-report")


@router.post("/staff/audit-token", response_model=AuditToken)
async def staff_audit_token(principal: StaffAdministrator, services: ServicesDep) -> AuditToken:
    """A token with which security staff query the whole trail at audit, for a few minutes."""
    tokens = services.audit_tokens
    token, expires_at = tokens.for_security_staff(principal)
    return AuditToken(token=token, expires_at=expires_at, url=f"{tokens.audit_url}/entries")
