"""INTEGRATIONS: a third party reads only once an admin enables it, only within its scopes,
never after it is revoked, and every read it makes is recorded as a data access."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from route_table import user_key

from billing.accounts.domain import Role
from billing.settings import BillingSettings
from devstack.testing import read_events

pytestmark = [pytest.mark.integration, pytest.mark.clause("INTEGRATIONS")]


async def _enable(
    api: httpx.AsyncClient, account: dict[str, Any], scopes: list[str]
) -> dict[str, Any]:
    enabled = await api.post(
        "/integrations",
        headers=account["headers"],
        json={"name": "Ledgerly Accounting", "scopes": scopes},
    )
    assert enabled.status_code == 201, enabled.text
    body: dict[str, Any] = enabled.json()
    body["headers"] = {"Authorization": f"Bearer {body['api_key']}"}
    return body


async def test_an_integration_reads_within_its_scopes_and_each_read_is_a_recorded_access(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    ledgerly = await _enable(api, account, ["customers:read", "invoices:read"])
    assert ledgerly["integration"]["scopes"] == ["customers:read", "invoices:read"]
    read = await api.get(f"/customers/{customer['id']}", headers=ledgerly["headers"])
    assert read.status_code == 200, read.text
    assert read.json()["name"] == "Bob Buyer"
    listed = await api.get("/invoices", headers=ledgerly["headers"])
    assert listed.status_code == 200
    # Outside its scopes, and anything an administrator does: refused.
    out_of_scope = await api.get("/credit-notes", headers=ledgerly["headers"])
    assert out_of_scope.status_code == 403
    for method, path in (
        ("POST", "/customers"),
        ("GET", "/users"),
        ("GET", "/api-keys"),
        ("GET", "/integrations"),
        ("POST", "/integrations"),
    ):
        refused = await api.request(method, path, headers=ledgerly["headers"], json={})
        assert refused.status_code == 403, (method, path, refused.text)

    accesses = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("data.accessed"),
        count=6,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    ours = [e["data"] for e in accesses if e["data"]["actor_id"] == ledgerly["integration"]["id"]]
    assert {(a["resource_type"], a["outcome"]) for a in ours} == {
        ("GET /customers/{customer_id}", "granted"),
        ("GET /invoices", "granted"),
        ("GET /credit-notes", "refused"),
        ("GET /users", "refused"),
        ("GET /api-keys", "refused"),
        ("GET /integrations", "refused"),
    }
    granted = next(a for a in ours if a["resource_type"] == "GET /customers/{customer_id}")
    assert granted["resource_id"] == customer["id"]
    assert granted["actor"] == "integration"
    assert granted["purpose"] == "integration"
    assert granted["actor_name"] == "Ledgerly Accounting"


async def test_revoking_an_integration_shuts_it_out_at_once(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any]
) -> None:
    ledgerly = await _enable(api, account, ["customers:read"])
    assert (await api.get("/customers", headers=ledgerly["headers"])).status_code == 200
    revoked = await api.delete(
        f"/integrations/{ledgerly['integration']['id']}", headers=account["headers"]
    )
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await api.get("/customers", headers=ledgerly["headers"])).status_code == 401
    listed = await api.get("/integrations", headers=account["headers"])
    assert [i["revoked_at"] is not None for i in listed.json()] == [True]
    # Its key is the integration's, not one of the admin's own keys.
    keys = await api.get("/api-keys", headers=account["headers"])
    assert all(not k["name"] or "Ledgerly" not in k["name"] for k in keys.json())


async def test_only_an_admin_enables_an_integration_and_writes_need_a_write_scope(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    accountant = await user_key(
        billing_settings.database_url, account["account"]["id"], Role.ACCOUNTANT
    )
    refused = await api.post(
        "/integrations",
        headers={"Authorization": f"Bearer {accountant}"},
        json={"name": "Sneaky", "scopes": ["customers:read"]},
    )
    assert refused.status_code == 403
    not_a_scope = await api.post(
        "/integrations",
        headers=account["headers"],
        json={"name": "Greedy", "scopes": ["users:write"]},
    )
    assert not_a_scope.status_code == 422
    writer = await _enable(api, account, ["invoices:write", "customers:read"])
    drafted = await api.post(
        "/invoices",
        headers=writer["headers"],
        json={
            "customer_id": customer["id"],
            "lines": [{"description": "Imported", "quantity": "1", "unit_price": "5"}],
        },
    )
    assert drafted.status_code == 201, drafted.text
    no_write = await api.post(
        "/customers",
        headers=writer["headers"],
        json={"name": "New", "email": "new@example.com"},
    )
    assert no_write.status_code == 403
