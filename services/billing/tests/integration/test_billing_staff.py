"""LEAST-ACCESS, STAFF-ACCESS, PURPOSE: staff are their own population with roles (support,
billing operations, security, legal), made by a security admin, signed in like users (password,
one cookie, CSRF, throttle), and they read only for the purposes of their roles."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from billing.main import cli
from billing.settings import BillingSettings
from devstack.testing import STAFF_PASSWORD, add_staff, enrol_staff, read_events, session_headers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.clause("LEAST-ACCESS", "STAFF-ACCESS", "PURPOSE"),
]


def _grant(staff_id: str, purpose: str) -> dict[str, Any]:
    return {
        "staff_id": staff_id,
        "purpose": purpose,
        "reason": "TICKET-9",
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }


async def test_the_first_security_admin_comes_from_the_server_command_not_the_api(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    """No token makes staff: the operator runs a command on the server; its code enrols once."""
    email = f"first-{uuid.uuid4().hex[:8]}@quittance.example.com"
    command = ["-m", "billing.main", "security-admin", "--name", "Ines", "--email", email]
    made = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        env={**os.environ, "BILLING_DATABASE_URL": billing_settings.database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(made.communicate(), timeout=120)
    assert made.returncode == 0, err.decode()
    code = out.decode().split("enrolment code (shown once): ")[1].strip()
    wrong = await api.post(
        "/staff/enrolment", json={"email": email, "code": "guess", "password": STAFF_PASSWORD}
    )
    assert wrong.status_code == 422, wrong.text
    other = await api.post(
        "/staff/enrolment",
        json={"email": "someone@quittance.example.com", "code": code, "password": STAFF_PASSWORD},
    )
    assert other.status_code == 422, "the code works only with its own email"
    headers = await enrol_staff(api, email=email, code=code)
    again = await api.post(
        "/staff/enrolment", json={"email": email, "code": code, "password": STAFF_PASSWORD}
    )
    assert again.status_code == 422, "an enrolment code works once"
    listed = await api.get("/staff", headers=headers)
    assert listed.status_code == 200, listed.text
    (me,) = [member for member in listed.json() if member["email"] == email]
    assert me["roles"] == ["security"]
    assert me["enrolled"] is True


async def test_only_a_security_admin_adds_staff_and_gives_roles(
    api: httpx.AsyncClient, account: dict[str, Any], security_admin: dict[str, str]
) -> None:
    body = {"name": "Mallory", "email": "mallory@quittance.example.com", "roles": ["security"]}
    assert (await api.post("/staff", json=body)).status_code == 401
    by_owner = await api.post("/staff", headers=account["headers"], json=body)
    assert by_owner.status_code == 403, "an account's owner is not staff"
    _, support = await add_staff(api, security_admin, roles=["support"])
    by_support = await api.post("/staff", headers=support, json=body)
    assert by_support.status_code == 403, by_support.text
    assert "needs the staff role security" in by_support.json()["detail"]
    listed = await api.get("/staff", headers=support)
    assert listed.status_code == 403


@pytest.mark.clause("COOKIES")
async def test_staff_sign_in_like_users_one_cookie_csrf_and_sign_out(
    api: httpx.AsyncClient, security_admin: dict[str, str]
) -> None:
    """COOKIES: the same one cookie; a change made with it needs the CSRF token."""
    staff_id, headers = await add_staff(api, security_admin, roles=["legal"])
    without_csrf = {"Cookie": security_admin["Cookie"]}
    refused = await api.patch(
        f"/staff/{staff_id}", headers=without_csrf, json={"roles": ["legal", "support"]}
    )
    assert refused.status_code == 403, refused.text
    assert "X-CSRF-Token" in refused.json()["detail"]
    changed = await api.patch(
        f"/staff/{staff_id}", headers=security_admin, json={"roles": ["legal", "support"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["roles"] == ["legal", "support"]
    # A reloaded page gets the CSRF token back from the session; roles apply at once.
    current = await api.get("/staff/session", headers={"Cookie": headers["Cookie"]})
    assert current.status_code == 200, current.text
    assert current.json()["csrf_token"] == headers["X-CSRF-Token"]
    assert current.json()["roles"] == ["legal", "support"]
    # Staff are not users: account routes refuse them.
    assert (await api.get("/customers", headers=headers)).status_code == 403
    signed_out = await api.delete("/session", headers=headers)
    assert signed_out.status_code == 204, signed_out.text
    ended = await api.get(
        f"/staff/accounts/{uuid.uuid4()}/customers/{uuid.uuid4()}",
        params={"purpose": "legal"},
        headers=headers,
    )
    assert ended.status_code == 401, "the session ended"


async def test_a_removed_or_reenrolled_staff_member_is_out_at_once(
    api: httpx.AsyncClient, security_admin: dict[str, str]
) -> None:
    probe = f"/staff/accounts/{uuid.uuid4()}/customers/{uuid.uuid4()}"
    removed_id, removed = await add_staff(api, security_admin, roles=["support"])
    reset_id, reset = await add_staff(api, security_admin, roles=["support"])
    for headers in (removed, reset):
        before = await api.get(probe, params={"purpose": "support"}, headers=headers)
        assert before.status_code == 403, "signed in; no grant"

    assert (await api.delete(f"/staff/{removed_id}", headers=security_admin)).status_code == 204
    after = await api.get(probe, params={"purpose": "support"}, headers=removed)
    assert after.status_code == 401, after.text
    renewed = await api.post(f"/staff/{reset_id}/enrolment", headers=security_admin)
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["staff"]["enrolled"] is False
    after = await api.get(probe, params={"purpose": "support"}, headers=reset)
    assert after.status_code == 401, "a reset ends the sessions"
    listed = {m["id"] for m in (await api.get("/staff", headers=security_admin)).json()}
    assert removed_id not in listed
    assert reset_id in listed


async def test_staff_sign_in_is_throttled_per_staff_member(
    api: httpx.AsyncClient, security_admin: dict[str, str], billing_settings: BillingSettings
) -> None:
    staff_id, _ = await add_staff(api, security_admin, roles=["support"])
    email = next(
        m["email"]
        for m in (await api.get("/staff", headers=security_admin)).json()
        if m["id"] == staff_id
    )
    wrong = {"email": email, "password": "not the right passphrase"}
    for _ in range(billing_settings.sign_in_failures_per_user):
        assert (await api.post("/staff/sessions", json=wrong)).status_code == 401
    throttled = await api.post("/staff/sessions", json={"email": email, "password": STAFF_PASSWORD})
    assert throttled.status_code == 429, "even the right password waits out the window"
    assert "Retry-After" in throttled.headers


@pytest.mark.clause("PURPOSE")
async def test_purpose_staff_read_only_for_their_roles_and_refusals_are_recorded(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    security_admin: dict[str, str],
    billing_settings: BillingSettings,
) -> None:
    """PURPOSE: a grant names a purpose the staff member works in; a read for another purpose
    is refused and recorded, even with a grant for it."""
    staff_id, support = await add_staff(api, security_admin, roles=["support"])
    legal_grant = await api.post(
        "/access-grants", headers=account["headers"], json=_grant(staff_id, "legal")
    )
    assert legal_grant.status_code == 422, legal_grant.text
    assert [e["field"] for e in legal_grant.json()["errors"]] == ["purpose"]
    granted = await api.post(
        "/access-grants", headers=account["headers"], json=_grant(staff_id, "support")
    )
    assert granted.status_code == 201, granted.text

    path = f"/staff/accounts/{account['account']['id']}/customers/{customer['id']}"
    assert (await api.get(path, params={"purpose": "support"}, headers=support)).status_code == 200
    # Roles change: the grant still stands, but reading for support is no longer their work.
    changed = await api.patch(
        f"/staff/{staff_id}", headers=security_admin, json={"roles": ["billing-operations"]}
    )
    assert changed.status_code == 200, changed.text
    refused = await api.get(path, params={"purpose": "support"}, headers=support)
    assert refused.status_code == 403, refused.text
    events = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("data.accessed"),
        count=2,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    assert [e["data"]["outcome"] for e in events] == ["granted", "refused"]
    assert "not the work of this staff member's roles" in events[1]["data"]["reason"]


async def test_staff_have_no_api_keys_and_a_staff_password_change_ends_their_sessions(
    api: httpx.AsyncClient, security_admin: dict[str, str]
) -> None:
    staff_id, headers = await add_staff(api, security_admin, roles=["support"])
    assert (await api.post("/api-keys", headers=headers, json={"scopes": []})).status_code == 403
    new_password = "another long staff passphrase"
    changed = await api.put(
        "/staff/me/password",
        headers=headers,
        json={"current_password": STAFF_PASSWORD, "new_password": new_password},
    )
    assert changed.status_code == 204, changed.text
    probe = f"/staff/accounts/{uuid.uuid4()}/customers/{uuid.uuid4()}"
    assert (await api.get(probe, params={"purpose": "support"}, headers=headers)).status_code == 401
    email = next(
        m["email"]
        for m in (await api.get("/staff", headers=security_admin)).json()
        if m["id"] == staff_id
    )
    old = await api.post("/staff/sessions", json={"email": email, "password": STAFF_PASSWORD})
    assert old.status_code == 401, "the old password no longer signs in"
    signed_in = await api.post("/staff/sessions", json={"email": email, "password": new_password})
    api.cookies.clear()
    assert session_headers(signed_in)["X-CSRF-Token"]


@pytest.mark.clause("LEAST-ACCESS")
async def test_a_security_admin_neither_changes_their_own_roles_nor_removes_themselves(
    api: httpx.AsyncClient, security_admin: dict[str, str]
) -> None:
    """LEAST-ACCESS: widening one's own reach, or leaving, takes another security admin."""
    own_id, admin = await add_staff(api, security_admin, roles=["security"])
    widened = await api.patch(
        f"/staff/{own_id}", headers=admin, json={"roles": ["security", "legal"]}
    )
    assert widened.status_code == 409, widened.text
    assert [e["field"] for e in widened.json()["errors"]] == ["roles"]
    left = await api.delete(f"/staff/{own_id}", headers=admin)
    assert left.status_code == 409, left.text
    still = await api.get("/staff", headers=admin)
    assert still.status_code == 200, "still in"
    assert next(m for m in still.json() if m["id"] == own_id)["roles"] == ["security"]
    # Another security admin may.
    changed = await api.patch(
        f"/staff/{own_id}", headers=security_admin, json={"roles": ["security", "legal"]}
    )
    assert changed.status_code == 200, changed.text


async def test_an_address_is_one_staff_member_whatever_its_case(
    api: httpx.AsyncClient, security_admin: dict[str, str]
) -> None:
    email = f"casey-{uuid.uuid4().hex[:8]}@quittance.example.com"
    body = {"name": "Casey", "email": email, "roles": ["support"]}
    assert (await api.post("/staff", headers=security_admin, json=body)).status_code == 201
    shouted = await api.post(
        "/staff", headers=security_admin, json={**body, "email": email.upper()}
    )
    assert shouted.status_code == 409, shouted.text
    assert shouted.json()["errors"][0]["field"] == "email"


async def test_the_server_command_makes_a_staff_member_with_roles_and_re_enrols_one_who_lost_access(
    api: httpx.AsyncClient,
    billing_settings: BillingSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The way back in when no security admin is left to re-enrol anyone: the same member, a
    new code, their old password and sessions gone, their roles kept; a session names them.
    (The command runs in this process: the subprocess path is the security admin's test.)"""
    email = f"olive-{uuid.uuid4().hex[:8]}@quittance.example.com"
    monkeypatch.setenv("BILLING_DATABASE_URL", billing_settings.database_url)

    async def run(*arguments: str) -> str:
        argv = ["billing.main", "staff-member", "--name", "Olive Ops", "--email", email]
        monkeypatch.setattr(sys, "argv", [*argv, *arguments])
        await asyncio.to_thread(cli)  # it runs its own event loop
        return capsys.readouterr().out

    said = await run("--role", "billing-operations")
    assert "re-enrolled" not in said
    first_id = said.split("staff id: ")[1].split()[0]
    code = said.split("enrolment code (shown once): ")[1].strip()
    headers = await enrol_staff(api, email=email, code=code)
    session = await api.get("/staff/session", headers={"Cookie": headers["Cookie"]})
    assert session.status_code == 200, session.text
    assert session.json()["name"] == "Olive Ops"
    assert session.json()["roles"] == ["billing-operations"]

    said = await run("--role", "security")
    assert said.split("staff id: ")[1].split()[0] == first_id, "the same member, not a second"
    assert "re-enrolled the existing staff member (roles kept: billing-operations)" in said
    ended = await api.get("/staff/session", headers={"Cookie": headers["Cookie"]})
    assert ended.status_code == 401, "their sessions ended"
    old = await api.post("/staff/sessions", json={"email": email, "password": STAFF_PASSWORD})
    assert old.status_code == 401, "their old password is gone"
    new_code = said.split("enrolment code (shown once): ")[1].strip()
    headers = await enrol_staff(api, email=email, code=new_code)
    signed_in = await api.get("/staff/session", headers={"Cookie": headers["Cookie"]})
    assert signed_in.json()["roles"] == ["billing-operations"], "their roles stay, none added"
    with pytest.raises(SystemExit) as refused:
        await run()
    assert refused.value.code == 2, "the command needs at least one role"
    assert "--role" in capsys.readouterr().err
