"""Who may call each route: one policy per route, declared where the route is (LEAST-ACCESS)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from billing.accounts.domain import (
    ADMINISTRATORS,
    BOOKKEEPERS,
    EVERY_ROLE,
    OWNER_ONLY,
    Role,
)
from billing.auth.models import Principal
from billing.auth.scopes import scope_for
from billing.auth.sessions import SAFE_METHODS
from billing.dependencies import PrincipalDep
from billing.errors import PermissionDeniedError
from billing.staff_access.domain import EVERY_STAFF_ROLE, STAFF_ADMINISTRATORS, StaffRole
from shared.telemetry import route_template


@dataclass(frozen=True)
class Allow:
    """A route's policy: the account roles that may call it, or staff.

    Routes never check roles themselves: they take the principal from their policy, so a route
    without one has no caller to act for, and the route table test reads these to walk every
    route with every role.
    """

    roles: frozenset[Role] = frozenset()
    staff_roles: frozenset[StaffRole] = frozenset()
    changes_account: bool = True  # refused once the account is terminated (read-only)

    async def __call__(self, request: Request, principal: PrincipalDep) -> Principal:
        """The caller, if this policy lets them in; a third party's read is recorded first,
        let in or not (INTEGRATIONS)."""
        if principal.integration_id is None:
            return self._check(request, principal)
        try:
            checked = self._check(request, principal)
        except PermissionDeniedError as refusal:
            await _record_integration_read(request, principal, str(refusal))
            raise
        await _record_integration_read(request, principal, None)
        return checked

    def _check(self, request: Request, principal: Principal) -> Principal:
        if principal.kind == "staff":
            if not self.staff_roles:
                raise PermissionDeniedError("staff members cannot use this route")
            if not principal.staff_roles & self.staff_roles:
                raise PermissionDeniedError(f"needs the staff role {_names(self.staff_roles)}")
            return principal
        if not self.roles:
            raise PermissionDeniedError("only staff members may use this route")
        if principal.role not in self.roles:
            raise PermissionDeniedError(f"needs the role {_names(self.roles)}")
        changes = request.method not in SAFE_METHODS
        if principal.scopes is not None:
            template = route_template(request.scope) or request.url.path
            needed = scope_for(template, changes=changes)
            if needed not in principal.scopes:
                raise PermissionDeniedError(f"this API key lacks the scope {needed}")
        if principal.read_only and self.changes_account and changes:
            raise PermissionDeniedError(ACCOUNT_READ_ONLY)
        return principal


async def _record_integration_read(
    request: Request, principal: Principal, refusal: str | None
) -> None:
    """data.accessed for an integration's read (a change is the account's own record)."""
    if request.method not in SAFE_METHODS:
        return
    template = route_template(request.scope) or request.url.path
    ids = [str(value) for value in request.path_params.values()]
    await request.app.state.services.integrations.record_read(
        principal=principal,
        resource_type=f"{request.method} {template}",
        resource_id=",".join(ids) or "*",
        refusal=refusal,
    )


def _names(roles: Iterable[Role | StaffRole]) -> str:
    return " or ".join(sorted(role.value for role in roles))


ACCOUNT_READ_ONLY = "the account is terminated: it is read-only until its data is purged"
# What the route table test recognises as this policy's refusal, and not the route's own.
POLICY_REFUSALS = (
    "needs the role ",
    "needs the staff role ",
    "staff members cannot use",
    "only staff members may use",
    "this API key lacks the scope",
)


ANY_USER = Allow(EVERY_ROLE)
# Signing out works on a closed account, and for staff.
OWN_SESSION = Allow(EVERY_ROLE, staff_roles=EVERY_STAFF_ROLE, changes_account=False)
BOOKKEEPER = Allow(BOOKKEEPERS)
ADMINISTRATOR = Allow(ADMINISTRATORS)
OWNER = Allow(OWNER_ONLY)
STAFF = Allow(staff_roles=EVERY_STAFF_ROLE)
STAFF_ADMINISTRATOR = Allow(staff_roles=STAFF_ADMINISTRATORS)
LEGAL_STAFF = Allow(staff_roles=frozenset({StaffRole.LEGAL}))

AnyUser = Annotated[Principal, Depends(ANY_USER)]
OwnSession = Annotated[Principal, Depends(OWN_SESSION)]
Bookkeeper = Annotated[Principal, Depends(BOOKKEEPER)]
Administrator = Annotated[Principal, Depends(ADMINISTRATOR)]
Owner = Annotated[Principal, Depends(OWNER)]
Staff = Annotated[Principal, Depends(STAFF)]
StaffAdministrator = Annotated[Principal, Depends(STAFF_ADMINISTRATOR)]
LegalStaff = Annotated[Principal, Depends(LEGAL_STAFF)]
