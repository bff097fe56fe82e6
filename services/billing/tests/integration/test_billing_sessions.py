"""COOKIES: sign-in with a password, one opaque session cookie, CSRF, sign-out, throttling."""

from __future__ import annotations

import re
import uuid
from http.cookies import SimpleCookie
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from route_table import api_routes

from billing.auth.sessions import CSRF_HEADER, SESSION_COOKIE
from billing.main import create_app
from billing.settings import BillingSettings
from billing.staff_access.domain import StaffRole
from devstack.testing import STAFF_PASSWORD, add_staff, enrol_staff, read_events, running

pytestmark = [pytest.mark.integration, pytest.mark.clause("COOKIES")]
PASSWORD = "correct horse battery staple 42"
# The routes that may set the cookie: signing in sets it, signing out and a new password clear it.
SESSION_ROUTES = {("POST", "/sessions"), ("DELETE", "/session"), ("PUT", "/users/me/password")}


async def _sign_up(api: httpx.AsyncClient, password: str = PASSWORD) -> dict[str, Any]:
    email = f"ada-{uuid.uuid4().hex[:8]}@sessions.example.com"
    opened = await api.post(
        "/accounts",
        json={"name": "Cookie Ltd", "owner": {"name": "Ada", "email": email, "password": password}},
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    body["email"] = email
    return body


def _session_cookie(response: httpx.Response) -> SimpleCookie:
    (header,) = response.headers.get_list("set-cookie")
    cookie = SimpleCookie()
    cookie.load(header)
    assert list(cookie) == [SESSION_COOKIE]
    return cookie


async def _sign_in(
    api: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> tuple[dict[str, str], str]:
    """The headers of a browser holding the session cookie, and the CSRF token."""
    signed_in = await api.post("/sessions", json={"email": email, "password": password})
    assert signed_in.status_code == 201, signed_in.text
    token = _session_cookie(signed_in)[SESSION_COOKIE].value
    api.cookies.clear()  # each call states its credentials; the client keeps none
    return {"Cookie": f"{SESSION_COOKIE}={token}"}, signed_in.json()["csrf_token"]


async def test_signing_in_sets_one_opaque_host_only_cookie_that_scripts_cannot_read(
    api: httpx.AsyncClient,
) -> None:
    account = await _sign_up(api)
    signed_in = await api.post("/sessions", json={"email": account["email"], "password": PASSWORD})
    assert signed_in.status_code == 201, signed_in.text
    morsel = _session_cookie(signed_in)[SESSION_COOKIE]
    assert morsel["secure"] is True
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/"
    assert not morsel["domain"], "__Host- cookies name no domain"
    assert len(morsel.value) >= 43, "at least 256 random bits, base64url"
    assert account["email"] not in morsel.value
    assert account["owner"]["id"] not in morsel.value
    assert signed_in.headers["cache-control"] == "no-store"
    assert signed_in.json()["role"] == "owner"


async def test_the_cookie_reads_and_with_its_csrf_token_changes_the_account(
    api: httpx.AsyncClient,
) -> None:
    account = await _sign_up(api)
    browser, csrf = await _sign_in(api, account["email"])
    assert (await api.get("/customers", headers=browser)).status_code == 200
    customer = {"name": "Bob", "email": "bob@example.com"}
    forged = await api.post("/customers", headers=browser, json=customer)
    assert forged.status_code == 403, "a change without the CSRF token is a forged request"
    assert CSRF_HEADER in forged.json()["detail"]
    wrong = await api.post("/customers", headers={**browser, CSRF_HEADER: "0" * 64}, json=customer)
    assert wrong.status_code == 403
    made = await api.post("/customers", headers={**browser, CSRF_HEADER: csrf}, json=customer)
    assert made.status_code == 201, made.text
    again = await api.get("/session", headers=browser)
    assert again.json()["csrf_token"] == csrf, "a reloaded page gets its token back"


async def test_each_sign_in_gets_a_new_id_and_signing_out_ends_only_that_session(
    api: httpx.AsyncClient,
) -> None:
    account = await _sign_up(api)
    first, first_csrf = await _sign_in(api, account["email"])
    second, _ = await _sign_in(api, account["email"])
    assert first != second
    signed_out = await api.delete("/session", headers={**first, CSRF_HEADER: first_csrf})
    assert signed_out.status_code == 204
    cleared = _session_cookie(signed_out)[SESSION_COOKIE]
    assert cleared["max-age"] == "0"
    assert not cleared.value
    assert (await api.get("/customers", headers=first)).status_code == 401
    assert (await api.get("/customers", headers=second)).status_code == 200


async def test_a_new_password_ends_every_session_and_the_old_one_stops_working(
    api: httpx.AsyncClient,
) -> None:
    account = await _sign_up(api)
    first, csrf = await _sign_in(api, account["email"])
    second, _ = await _sign_in(api, account["email"])
    new = "a much better passphrase 2026"
    wrong = await api.put(
        "/users/me/password",
        headers={**first, CSRF_HEADER: csrf},
        json={"current_password": "not it at all 123", "new_password": new},
    )
    assert wrong.status_code == 403
    changed = await api.put(
        "/users/me/password",
        headers={**first, CSRF_HEADER: csrf},
        json={"current_password": PASSWORD, "new_password": new},
    )
    assert changed.status_code == 204, changed.text
    assert (await api.get("/customers", headers=first)).status_code == 401
    assert (await api.get("/customers", headers=second)).status_code == 401
    old = await api.post("/sessions", json={"email": account["email"], "password": PASSWORD})
    assert old.status_code == 401
    await _sign_in(api, account["email"], new)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short pass1", "at least 12"),
        ("password1234", "most common"),
        ("Qwertyuiop123", "most common"),
        (" padded password 1 ", "spaces"),
    ],
)
async def test_weak_passwords_are_refused_naming_the_field(
    api: httpx.AsyncClient, password: str, why: str
) -> None:
    refused = await api.post(
        "/accounts",
        json={
            "name": "Weak Ltd",
            "owner": {"name": "Wes", "email": "wes@weak.example.com", "password": password},
        },
    )
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["errors"]
    assert error["field"] == "owner.password"
    assert why in error["message"]
    assert password.strip() not in refused.text, "the refusal never repeats the password"


async def test_a_wrong_password_and_an_unknown_address_get_the_same_answer_then_a_throttle(
    billing_settings: BillingSettings,
) -> None:
    strict = billing_settings.model_copy(update={"sign_in_failures_per_user": 3})
    async with running(create_app(strict), base_url="http://billing") as api:
        account = await _sign_up(api)
        wrong = {"email": account["email"], "password": "not the password 1"}
        unknown = await api.post(
            "/sessions", json={"email": "nobody@sessions.example.com", "password": "whatever 12"}
        )
        answers = [await api.post("/sessions", json=wrong) for _ in range(3)]
        assert {(a.status_code, a.json()["detail"]) for a in [unknown, *answers]} == {
            (401, "wrong email or password")
        }
        throttled = await api.post(
            "/sessions", json={"email": account["email"], "password": PASSWORD}
        )
        assert throttled.status_code == 429, "even the right password waits out the throttle"
        assert int(throttled.headers["retry-after"]) > 0
        assert throttled.headers["content-type"] == "application/problem+json"


async def test_failed_sign_ins_from_one_address_are_throttled_whoever_they_name(
    billing_settings: BillingSettings,
) -> None:
    strict = billing_settings.model_copy(update={"sign_in_failures_per_address": 3})
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    async with running(
        create_app(strict), base_url="http://billing", client_address=address
    ) as api:
        guesses = [
            await api.post(
                "/sessions",
                json={"email": f"guess{n}@sessions.example.com", "password": "guess 123456"},
            )
            for n in range(4)
        ]
    assert [g.status_code for g in guesses] == [401, 401, 401, 429]


async def test_sessions_end_when_idle_and_at_their_absolute_end(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _sign_up(api)
    idle, _ = await _sign_in(api, account["email"])
    old, _ = await _sign_in(api, account["email"])
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        sessions = await connection.fetch(
            "SELECT id FROM web_session WHERE user_id = $1 ORDER BY created_at",
            uuid.UUID(account["owner"]["id"]),
        )
        await connection.execute(
            "UPDATE web_session SET last_seen_at = now() - make_interval(mins => $2) WHERE id = $1",
            sessions[-2]["id"],
            billing_settings.session_idle_minutes + 1,
        )
        await connection.execute(
            "UPDATE web_session SET expires_at = now() - interval '1 second' WHERE id = $1",
            sessions[-1]["id"],
        )
        stored = await connection.fetchval(
            "SELECT password_hash FROM app_user WHERE id = $1", uuid.UUID(account["owner"]["id"])
        )
    finally:
        await connection.close()
    assert (await api.get("/customers", headers=idle)).status_code == 401
    assert (await api.get("/customers", headers=old)).status_code == 401
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), "OWASP's Argon2id parameters"


@pytest.fixture(scope="module")
def app(billing_settings: BillingSettings) -> FastAPI:
    return create_app(billing_settings)


async def test_cookie_census_no_route_ever_sets_any_other_cookie(
    app: FastAPI, billing_settings: BillingSettings, security_admin: dict[str, str]
) -> None:
    """Every route, signed out, with a user's cookie, a staff member's cookie and an API key:
    one cookie, ever."""
    async with running(app, base_url="http://billing") as api:
        account = await _sign_up(api)
        browser, csrf = await _sign_in(api, account["email"])
        key = {"Authorization": f"Bearer {account['api_key']}"}
        _, staff = await add_staff(api, security_admin, roles=[r.value for r in StaffRole])
        seen: dict[tuple[str, str], set[str]] = {}
        routes = [(method, path) for method, path, _ in api_routes(app)]
        # What ends the session, then what ends the account, goes last.
        routes.sort(key=lambda r: (r[1] == "/account/termination", r in SESSION_ROUTES))
        for method, path in [*routes, ("GET", "/docs"), ("GET", "/openapi.json")]:
            url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
            for headers in ({}, {**browser, CSRF_HEADER: csrf}, key, staff):
                response = await api.request(
                    method,
                    url,
                    headers=headers,
                    json={} if method in {"POST", "PUT", "PATCH"} else None,
                )
                names = {
                    name
                    for header in response.headers.get_list("set-cookie")
                    for name in SimpleCookie(header)
                }
                seen.setdefault((method, path), set()).update(names)
        assert {route: names for route, names in seen.items() if names} == {
            ("DELETE", "/session"): {SESSION_COOKIE}
        }, "only signing out cleared the cookie (the other session routes had no valid body)"
        fresh = await _sign_up(api)  # the walk terminated the first account
        signed_in = await api.post(
            "/sessions", json={"email": fresh["email"], "password": PASSWORD}
        )
        assert {name for name in SimpleCookie(signed_in.headers["set-cookie"])} == {SESSION_COOKIE}
        email = f"census-{uuid.uuid4().hex[:8]}@quittance.example.com"
        added = await api.post(
            "/staff",
            headers=security_admin,
            json={"name": "Cen Sus", "email": email, "roles": ["support"]},
        )
        code = added.json()["enrolment_code"]
        await enrol_staff(api, email=email, code=code)
        staff_in = await api.post(
            "/staff/sessions", json={"email": email, "password": STAFF_PASSWORD}
        )
        api.cookies.clear()
        assert [
            name
            for header in staff_in.headers.get_list("set-cookie")
            for name in SimpleCookie(header)
        ] == [SESSION_COOKIE]


async def test_a_terminated_account_reads_but_changes_nothing_and_its_users_still_sign_out(
    api: httpx.AsyncClient,
) -> None:
    account = await _sign_up(api)
    key = {"Authorization": f"Bearer {account['api_key']}"}
    browser, csrf = await _sign_in(api, account["email"])
    terminated = await api.post("/account/termination", headers=key, json={"password": PASSWORD})
    assert terminated.status_code == 202, terminated.text
    assert (await api.get("/customers", headers=browser)).status_code == 200
    refused = await api.post(
        "/customers", headers={**browser, CSRF_HEADER: csrf}, json={"name": "Late"}
    )
    assert refused.status_code == 403
    assert "read-only" in refused.json()["detail"]
    again, _ = await _sign_in(api, account["email"])
    assert (await api.get("/account", headers=again)).json()["status"] == "terminated"
    signed_out = await api.delete("/session", headers={**browser, CSRF_HEADER: csrf})
    assert signed_out.status_code == 204


CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
FIREFOX_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
)


@pytest.mark.clause("COLLECTED")
async def test_collected_a_session_keeps_address_browser_system_and_referring_site_only(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _sign_up(api)
    marker = f"QueryMark{uuid.uuid4().hex[:8]}"
    signed_in = await api.post(
        "/sessions",
        json={"email": account["email"], "password": PASSWORD},
        headers={"User-Agent": CHROME_ON_MAC, "Referer": f"https://search.example/q?who={marker}"},
    )
    assert signed_in.status_code == 201, signed_in.text
    key = {"Authorization": f"Bearer {account['api_key']}"}
    (listed,) = (await api.get("/sessions", headers=key)).json()
    assert listed["browser"] == "Chrome 120"
    assert listed["operating_system"] == "Mac OS X 10"
    assert listed["referrer"] == "https://search.example", "the origin, not the search"
    assert listed["ip_address"]
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        row = await connection.fetchrow(
            "SELECT * FROM web_session WHERE id = $1", uuid.UUID(listed["id"])
        )
    finally:
        await connection.close()
    assert "AppleWebKit" not in repr(dict(row)), "not the user-agent string"
    assert marker not in repr(dict(row)), "not the referrer's query"


async def test_a_sign_in_from_a_new_device_sends_a_security_notice_once(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account = await _sign_up(api)
    for agent in (CHROME_ON_MAC, CHROME_ON_MAC, FIREFOX_ON_WINDOWS, FIREFOX_ON_WINDOWS):
        signed_in = await api.post(
            "/sessions",
            json={"email": account["email"], "password": PASSWORD},
            headers={"User-Agent": agent},
        )
        assert signed_in.status_code == 201, signed_in.text
    notices = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("user.new_device_signed_in"),
        count=2,
        key=account["account"]["id"],
        timeout=5,
        keystore=billing_settings.keystore,
    )
    assert len(notices) == 1, "the first sign-in and a known device send none"
    assert notices[0]["data"]["browser"] == "Firefox 121"
    assert notices[0]["data"]["email"] == account["email"]


async def test_an_admin_ends_any_session_of_the_account_and_no_other(
    api: httpx.AsyncClient,
) -> None:
    account, other = await _sign_up(api), await _sign_up(api)
    browser, _ = await _sign_in(api, account["email"])
    elsewhere, _ = await _sign_in(api, other["email"])
    key = {"Authorization": f"Bearer {account['api_key']}"}
    other_key = {"Authorization": f"Bearer {other['api_key']}"}
    (theirs,) = (await api.get("/sessions", headers=other_key)).json()
    assert (await api.delete(f"/sessions/{theirs['id']}", headers=key)).status_code == 404
    (mine,) = (await api.get("/sessions", headers=key)).json()
    assert (await api.delete(f"/sessions/{mine['id']}", headers=key)).status_code == 204
    assert (await api.get("/customers", headers=browser)).status_code == 401
    assert (await api.get("/customers", headers=elsewhere)).status_code == 200


async def test_a_password_change_is_throttled_like_sign_in(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    """A stolen session or key cannot guess the current password through a password change."""
    account = await _sign_up(api)
    key = {"Authorization": f"Bearer {account['api_key']}"}
    new = {"new_password": "a brand new passphrase"}
    for _ in range(billing_settings.sign_in_failures_per_user):
        guessed = await api.put(
            "/users/me/password", headers=key, json={**new, "current_password": "a wrong guess"}
        )
        assert guessed.status_code == 403, guessed.text
    right = await api.put(
        "/users/me/password", headers=key, json={**new, "current_password": PASSWORD}
    )
    assert right.status_code == 429, right.text
    assert "Retry-After" in right.headers


async def test_the_throttle_does_not_tell_a_known_email_from_an_unknown_one(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    """Guessing at an address nobody has is throttled exactly like guessing at a user's: the
    answers never say which addresses exist."""
    account = await _sign_up(api)
    nobody = f"Nobody-{uuid.uuid4().hex[:8]}@sessions.example.com"
    answers: dict[str, list[int]] = {}
    for email in (account["email"], nobody):
        wrong = {"email": email, "password": "not the password 1"}
        answers[email] = [
            (await api.post("/sessions", json=wrong)).status_code
            for _ in range(billing_settings.sign_in_failures_per_user + 1)
        ]
    expected = [401] * billing_settings.sign_in_failures_per_user + [429]
    assert answers == {account["email"]: expected, nobody: expected}
    # The same address written another way is the same guess.
    other_case = {"email": nobody.lower(), "password": "not the password 1"}
    assert (await api.post("/sessions", json=other_case)).status_code == 429
