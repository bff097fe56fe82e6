"""LEAST-ACCESS: an account's users, invited, given roles, removed, and one owner at all times."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from billing.settings import BillingSettings
from devstack.testing import read_events

pytestmark = [pytest.mark.integration, pytest.mark.clause("LEAST-ACCESS")]
OWNER_PASSWORD = "the owner's long passphrase"
PASSWORD = "a colleague's long passphrase"


async def _open(api: httpx.AsyncClient) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    opened = await api.post(
        "/accounts",
        json={
            "name": f"Team {tag}",
            "owner": {
                "name": "Olga",
                "email": f"olga-{tag}@team.example",
                "password": OWNER_PASSWORD,
            },
        },
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    body["headers"] = {"Authorization": f"Bearer {body['api_key']}"}
    body["tag"] = tag
    return body


async def _invite_and_join(
    api: httpx.AsyncClient, account: dict[str, Any], settings: BillingSettings, role: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Invite a user with the role, accept with the code from the event, sign in."""
    email = f"{role}-{uuid.uuid4().hex[:6]}@team.example"
    invited = await api.post(
        "/users", headers=account["headers"], json={"name": "Carla", "email": email, "role": role}
    )
    assert invited.status_code == 201, invited.text
    events = await read_events(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("user.invited"),
        count=1,
        key=account["account"]["id"],
        keystore=settings.keystore,
    )  # each account here invites one person: its first invitation is this one
    accepted = await api.post(
        "/invitations/accept", json={"token": events[0]["data"]["token"], "password": PASSWORD}
    )
    assert accepted.status_code == 204, accepted.text
    signed_in = await api.post("/sessions", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 201, signed_in.text
    browser = {
        "Cookie": signed_in.headers["set-cookie"].split(";")[0],
        "X-CSRF-Token": signed_in.json()["csrf_token"],
    }
    api.cookies.clear()
    return invited.json(), browser


async def test_an_invitation_is_emailed_through_an_event_sealed_on_the_broker_and_used_once(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _open(api)
    user, browser = await _invite_and_join(api, account, billing_settings, "accountant")
    assert user["status"] == "invited"
    assert user["role"] == "accountant"
    team = await api.get("/users", headers=account["headers"])
    assert {(u["id"], u["status"]) for u in team.json()} >= {(user["id"], "active")}
    # What an accountant may and may not do, signed in with the cookie.
    made = await api.post(
        "/customers", headers=browser, json={"name": "Bo", "email": "b@o.example"}
    )
    assert made.status_code == 201, made.text
    assert (await api.get("/access-grants", headers=browser)).status_code == 403
    invite = {"name": "Eve", "email": "eve@team.example", "role": "admin"}
    assert (await api.post("/users", headers=browser, json=invite)).status_code == 403


async def test_an_invitation_is_refused_when_used_lapsed_or_made_up(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _open(api)
    email = f"late-{uuid.uuid4().hex[:6]}@team.example"
    await api.post(
        "/users",
        headers=account["headers"],
        json={"name": "Late", "email": email, "role": "read_only"},
    )
    (event,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("user.invited"),
        count=1,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute(
            "UPDATE user_invitation SET expires_at = now() - interval '1 minute' "
            "WHERE user_id = $1",
            uuid.UUID(event["data"]["user_id"]),
        )
    finally:
        await connection.close()
    for token, why in ((event["data"]["token"], "lapsed"), ("made-up", "no such invitation")):
        refused = await api.post("/invitations/accept", json={"token": token, "password": PASSWORD})
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "token"
        assert why in refused.json()["detail"]
    signed_in = await api.post("/sessions", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 401, "an invited user has no way in before accepting"


async def test_the_owner_is_never_invited_demoted_or_removed_and_a_role_change_applies_at_once(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _open(api)
    owner_id = account["owner"]["id"]
    as_owner = await api.post(
        "/users",
        headers=account["headers"],
        json={"name": "Ovid", "email": "ovid@team.example", "role": "owner"},
    )
    assert as_owner.status_code == 422
    assert as_owner.json()["errors"][0]["field"] == "role"
    user, browser = await _invite_and_join(api, account, billing_settings, "admin")
    demote = await api.patch(f"/users/{owner_id}", headers=browser, json={"role": "admin"})
    assert demote.status_code == 409
    assert (await api.delete(f"/users/{owner_id}", headers=browser)).status_code == 409
    changed = await api.patch(
        f"/users/{user['id']}", headers=account["headers"], json={"role": "read_only"}
    )
    assert changed.json()["role"] == "read_only"
    assert (await api.get("/access-grants", headers=browser)).status_code == 403


async def test_a_removed_user_is_shut_out_at_once_key_session_and_password(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _open(api)
    user, browser = await _invite_and_join(api, account, billing_settings, "accountant")
    assert (await api.get("/customers", headers=browser)).status_code == 200
    removed = await api.delete(f"/users/{user['id']}", headers=account["headers"])
    assert removed.status_code == 204
    assert (await api.get("/customers", headers=browser)).status_code == 401
    again = await api.post("/sessions", json={"email": user["email"], "password": PASSWORD})
    assert again.status_code == 401
    team = await api.get("/users", headers=account["headers"])
    assert user["id"] not in {u["id"] for u in team.json()}
    gone = await api.delete(f"/users/{user['id']}", headers=account["headers"])
    assert gone.status_code == 404


async def test_the_owner_hands_over_with_their_password_and_one_owner_remains(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _open(api)
    successor, browser = await _invite_and_join(api, account, billing_settings, "admin")
    wrong = await api.post(
        "/account/owner",
        headers=account["headers"],
        json={"user_id": successor["id"], "password": "not the password at all"},
    )
    assert wrong.status_code == 403
    by_admin = await api.post(
        "/account/owner",
        headers=browser,
        json={"user_id": successor["id"], "password": PASSWORD},
    )
    assert by_admin.status_code == 403, "only the owner hands over"
    handed = await api.post(
        "/account/owner",
        headers=account["headers"],
        json={"user_id": successor["id"], "password": OWNER_PASSWORD},
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["role"] == "owner"
    roles = {u["email"]: u["role"] for u in (await api.get("/users", headers=browser)).json()}
    assert sorted(roles.values()) == ["admin", "owner"]
    terminate = await api.post("/account/termination", headers=account["headers"])
    assert terminate.status_code == 403, "the former owner is an admin now"
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute(
                "UPDATE app_user SET role = 'OWNER' WHERE id = $1",
                uuid.UUID(account["owner"]["id"]),
            )
    finally:
        await connection.close()


async def test_an_address_is_one_user_of_an_account_whatever_its_case(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _open(api)
    invite = {"name": "Eve", "email": f"eve-{account['tag']}@team.example", "role": "accountant"}
    assert (await api.post("/users", headers=account["headers"], json=invite)).status_code == 201
    shouted = {**invite, "email": invite["email"].upper()}
    again = await api.post("/users", headers=account["headers"], json=shouted)
    assert again.status_code == 409, again.text
    assert again.json()["errors"][0]["field"] == "email"
    owner_email = account["owner"]["email"]
    signed_in = await api.post(
        "/sessions", json={"email": owner_email.upper(), "password": OWNER_PASSWORD}
    )
    assert signed_in.status_code == 201, "the owner signs in with their address in any case"
