"""LEAST-ACCESS, INTEGRATIONS: API keys for scripts and integrations: scoped, expiring, revocable
at once, shown once, never beyond their user's role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from route_table import api_routes, policies, user_key

from billing.accounts.domain import Role
from billing.auth.policy import Allow
from billing.auth.scopes import SCOPE_AREAS, ApiKeyScope, scope_for
from billing.main import create_app
from billing.settings import BillingSettings

pytestmark = [pytest.mark.integration, pytest.mark.clause("LEAST-ACCESS", "INTEGRATIONS")]


async def _key(api: httpx.AsyncClient, account: dict[str, Any], **body: Any) -> dict[str, Any]:
    made = await api.post("/api-keys", headers=account["headers"], json={"name": "ci", **body})
    assert made.status_code == 201, made.text
    key: dict[str, Any] = made.json()
    key["headers"] = {"Authorization": f"Bearer {key['api_key']}"}
    return key


def test_every_scope_is_an_area_read_or_written_and_every_user_route_has_an_area(
    billing_settings: BillingSettings,
) -> None:
    assert {s.value for s in ApiKeyScope} == {
        f"{area}:{kind}" for area in SCOPE_AREAS for kind in ("read", "write")
    }
    app: FastAPI = create_app(billing_settings)
    for method, path, route in api_routes(app):
        stated: list[Allow] = list(policies(route.dependant))
        if stated and stated[0].roles:  # a user's route: a scoped key may be let in
            needed = scope_for(path, changes=method not in {"GET", "HEAD", "OPTIONS"})
            assert needed in {s.value for s in ApiKeyScope}, f"{method} {path} needs {needed}"


async def test_a_scoped_key_does_what_its_scopes_say_and_nothing_else(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any]
) -> None:
    reader = await _key(api, account, scopes=["invoices:read"])
    assert reader["scopes"] == ["invoices:read"]
    assert (await api.get("/invoices", headers=reader["headers"])).status_code == 200
    draft = {
        "customer_id": customer["id"],
        "currency": "EUR",
        "due_date": "2030-01-31",
        "lines": [{"description": "Work", "quantity": "1", "unit_price": "5"}],
    }
    refused = await api.post("/invoices", headers=reader["headers"], json=draft)
    assert refused.status_code == 403
    assert "invoices:write" in refused.json()["detail"]
    assert (await api.get("/customers", headers=reader["headers"])).status_code == 403
    assert (await api.get("/api-keys", headers=reader["headers"])).status_code == 403
    writer = await _key(api, account, scopes=["invoices:write", "invoices:read"])
    assert (await api.post("/invoices", headers=writer["headers"], json=draft)).status_code == 201


async def test_a_key_is_shown_once_stored_as_a_hash_listed_with_its_last_use_and_revoked_at_once(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    key = await _key(api, account, scopes=["customers:read"])
    assert (await api.get("/customers", headers=key["headers"])).status_code == 200
    listed = {k["id"]: k for k in (await api.get("/api-keys", headers=account["headers"])).json()}
    assert "api_key" not in listed[key["id"]]
    assert listed[key["id"]]["last_used_at"] is not None
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        stored = await connection.fetch("SELECT * FROM api_key WHERE id = $1", uuid.UUID(key["id"]))
    finally:
        await connection.close()
    assert key["api_key"] not in repr([dict(r) for r in stored])
    revoked = await api.post(f"/api-keys/{key['id']}/revoke", headers=account["headers"])
    assert revoked.json()["revoked_at"] is not None
    assert (await api.get("/customers", headers=key["headers"])).status_code == 401


async def test_an_expired_key_stops_working_and_a_past_expiry_is_refused(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    key = await _key(api, account, scopes=["customers:read"], expires_at=soon)
    assert (await api.get("/customers", headers=key["headers"])).status_code == 200
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute(
            "UPDATE api_key SET expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(key["id"]),
        )
    finally:
        await connection.close()
    assert (await api.get("/customers", headers=key["headers"])).status_code == 401
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = await api.post(
        "/api-keys",
        headers=account["headers"],
        json={"name": "old", "scopes": ["customers:read"], "expires_at": past},
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "expires_at"
    unknown = await api.post(
        "/api-keys", headers=account["headers"], json={"name": "x", "scopes": ["everything"]}
    )
    assert unknown.status_code == 422


async def test_a_key_never_exceeds_its_users_role(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    """A read-only user's key with a write scope still cannot change anything."""
    reader_key = await user_key(
        billing_settings.database_url, account["account"]["id"], Role.READ_ONLY
    )
    reader = {"Authorization": f"Bearer {reader_key}"}
    made = await api.post(
        "/api-keys", headers=reader, json={"name": "x", "scopes": ["customers:write"]}
    )
    assert made.status_code == 201, made.text
    scoped = {"Authorization": f"Bearer {made.json()['api_key']}"}
    refused = await api.post(
        "/customers", headers=scoped, json={"name": "Y", "email": "y@y.example"}
    )
    assert refused.status_code == 403
    assert "needs the role" in refused.json()["detail"]
    other = await _key(api, account, scopes=["customers:read"])
    revoking = await api.post(f"/api-keys/{other['id']}/revoke", headers=reader)
    assert revoking.status_code == 404, "only an admin revokes another user's key"
