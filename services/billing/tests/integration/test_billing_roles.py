"""LEAST-ACCESS: every route states who may call it, and the table of routes and roles holds."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from route_table import api_routes, policies, user_key

from billing.accounts.domain import Role
from billing.auth.policy import POLICY_REFUSALS
from billing.main import create_app
from billing.settings import BillingSettings
from billing.staff_access.domain import StaffRole
from devstack.testing import add_staff, running

pytestmark = [pytest.mark.integration, pytest.mark.clause("LEAST-ACCESS")]

# Routes anyone may call, each for a reason.
PUBLIC = {
    ("POST", "/accounts"),  # signing up
    ("POST", "/sessions"),  # signing in
    ("POST", "/staff/sessions"),  # staff signing in
    ("POST", "/staff/enrolment"),  # the enrolment code is the credential
    ("POST", "/invitations/accept"),  # the invitation's code is the credential
    ("GET", "/docs"),  # the API's documentation, served offline
    ("GET", "/docs/static/swagger-ui-init.js"),
    ("GET", "/healthz"),
    ("POST", "/payments/webhooks/{gateway}"),  # the gateway's signature is the credential
    ("GET", "/payments/done"),  # where the payer's browser lands after paying
    ("GET", "/metrics"),
}
TERMINATION = ("POST", "/account/termination")
SIGN_OUT = ("DELETE", "/session")


@pytest.fixture(scope="module")
def app(billing_settings: BillingSettings) -> FastAPI:
    return create_app(billing_settings)


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app, base_url="http://billing") as client:
        yield client


def test_every_route_states_exactly_one_policy_unless_public(app: FastAPI) -> None:
    for method, path, route in api_routes(app):
        stated = list(policies(route.dependant))
        if (method, path) in PUBLIC:
            assert not stated, f"{method} {path} is public and has a policy"
        else:
            assert len(stated) == 1, f"{method} {path} states {len(stated)} policies"


async def test_every_route_with_every_role_is_refused_exactly_when_its_policy_says(
    app: FastAPI,
    client: httpx.AsyncClient,
    billing_settings: BillingSettings,
    security_admin: dict[str, str],
) -> None:
    opened = await client.post(
        "/accounts",
        json={"name": "Roles Ltd", "owner": {"name": "Olga", "email": "olga@roles.example.com"}},
    )
    assert opened.status_code == 201, opened.text
    account_id = opened.json()["account"]["id"]
    keys = {Role.OWNER: opened.json()["api_key"]}
    for role in (Role.ADMIN, Role.ACCOUNTANT, Role.READ_ONLY):
        keys[role] = await user_key(billing_settings.database_url, account_id, role)
    callers: dict[str, tuple[dict[str, str], Role | StaffRole]] = {
        role.value: ({"Authorization": f"Bearer {key}"}, role) for role, key in keys.items()
    }
    for staff_role in StaffRole:
        _, headers = await add_staff(client, security_admin, roles=[staff_role.value])
        callers[f"staff {staff_role.value}"] = (headers, staff_role)

    table: list[tuple[str, str, str, bool, int]] = []
    routes = [r for r in api_routes(app) if (r[0], r[1]) not in PUBLIC]
    # Terminating ends the account, signing out the staff's sessions: they go last.
    routes.sort(key=lambda r: ((r[0], r[1]) == SIGN_OUT, (r[0], r[1]) == TERMINATION))
    for method, path, route in routes:
        (policy,) = policies(route.dependant)
        url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
        for name, (headers, role) in sorted(callers.items(), key=lambda c: c[0] == "owner"):
            allowed = (
                role in policy.staff_roles if isinstance(role, StaffRole) else role in policy.roles
            )
            response = await client.request(
                method,
                url,
                headers=headers,
                json={} if method in {"POST", "PUT", "PATCH"} else None,
            )
            refused = response.status_code == 403 and response.json()["detail"].startswith(
                POLICY_REFUSALS
            )
            table.append((method, path, name, allowed, response.status_code))
            assert refused is not allowed, (
                f"{method} {path} as {name}: {'allowed' if allowed else 'refused'} by its "
                f"policy, answered {response.status_code} {response.text}"
            )
    assert {name for _, _, name, allowed, _ in table if allowed} == set(callers)
    assert any(not allowed for *_, allowed, _ in table), "some route refuses some role"
    # Only the owner reached termination's own check (its body: the owner's password).
    assert [row for row in table if row[:2] == TERMINATION and row[4] != 403] == [
        (*TERMINATION, "owner", True, 422)
    ]


@pytest.mark.parametrize(
    ("role", "method", "path", "expected"),
    [
        (Role.READ_ONLY, "GET", "/customers", 200),
        (Role.READ_ONLY, "POST", "/customers", 403),
        (Role.ACCOUNTANT, "POST", "/customers", 201),
        (Role.ACCOUNTANT, "GET", "/access-grants", 403),
        (Role.ADMIN, "GET", "/access-grants", 200),
        (Role.ADMIN, "POST", "/account/termination", 403),
        (Role.ADMIN, "PATCH", "/account", 200),
        (Role.ACCOUNTANT, "PATCH", "/account", 403),
        (Role.READ_ONLY, "PATCH", "/users/me", 200),
        (Role.READ_ONLY, "GET", "/account/changes", 403),
        (Role.ADMIN, "POST", "/account/access-report-token", 200),
        (Role.ACCOUNTANT, "POST", "/account/access-report-token", 403),
    ],
)
async def test_what_each_role_may_do(
    client: httpx.AsyncClient,
    billing_settings: BillingSettings,
    account: dict[str, Any],
    role: Role,
    method: str,
    path: str,
    expected: int,
) -> None:
    key = await user_key(billing_settings.database_url, account["account"]["id"], role)
    body = {"name": "Carla", "email": "carla@example.com"} if path == "/customers" else None
    body = {"name": "Corrected"} if method == "PATCH" else body
    response = await client.request(
        method, path, headers={"Authorization": f"Bearer {key}"}, json=body
    )
    assert response.status_code == expected, response.text
