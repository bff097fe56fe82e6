"""STAFF-ACCESS, LEAST-ACCESS: sign-in to the dashboard: operations staff by name, with their
staff account; never by guessing, never after their removal."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet

from ops.main import BILLING_SESSION_COOKIE as COOKIE
from ops.main import SESSION_COOKIE, create_app
from ops.settings import OpsSettings

pytestmark = pytest.mark.clause("STAFF-ACCESS", "LEAST-ACCESS")

PASSWORD = "correct horse battery staple"
OPERATIONS = {"email": "olive@quittance.example.com", "password": PASSWORD}


class FakeBilling:
    """Billing's staff sign-in as the dashboard uses it: `POST /staff/sessions`, `GET
    /staff/session`, `DELETE /session`; every other address is unreachable."""

    def __init__(self) -> None:
        self.staff = {
            "olive@quittance.example.com": ("Olive Ops", ["billing-operations"]),
            "lea@quittance.example.com": ("Lea Legal", ["legal"]),
        }
        self.sessions: dict[str, str] = {}  # token: email
        self.down = False
        self.failing = False  # answers 500
        self.forwarded: list[str] = []  # the address each sign-in came from, as billing sees it

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down or not request.url.path.startswith(("/staff/session", "/session")):
            raise httpx.ConnectError("nothing listens here", request=request)
        if self.failing:
            return httpx.Response(500, json={"title": "Internal error"})
        token = request.headers.get("cookie", "").partition("=")[2]
        if request.method == "POST" and request.url.path == "/staff/sessions":
            self.forwarded.append(request.headers.get("x-forwarded-for", "ops itself"))
            body = json.loads(request.content)
            if body["email"] not in self.staff or body["password"] != PASSWORD:
                return httpx.Response(401, json={"title": "Not authenticated"})
            token = secrets.token_urlsafe(8)
            self.sessions[token] = body["email"]
            name, roles = self.staff[body["email"]]
            return httpx.Response(
                201,
                headers={"set-cookie": f"{COOKIE}={token}; HttpOnly; Path=/; Secure"},
                json={
                    "staff_id": str(uuid.uuid4()),
                    "name": name,
                    "roles": roles,
                    "csrf_token": "csrf-" + token,
                },
            )
        email = self.sessions.get(token)
        if email is None or email not in self.staff:
            return httpx.Response(401, json={"title": "Not authenticated"})
        if request.method == "DELETE" and request.headers.get("x-csrf-token") == "csrf-" + token:
            del self.sessions[token]
            return httpx.Response(204)
        name, roles = self.staff[email]
        return httpx.Response(200, json={"staff_id": "s", "name": name, "roles": roles})


@pytest.fixture
def billing() -> FakeBilling:
    return FakeBilling()


@pytest.fixture
def settings() -> OpsSettings:
    return OpsSettings(
        environment="test",
        services={"billing": "http://billing.test"},
        billing_operator_token="t0",  # type: ignore[arg-type]
        notifications_operator_token="t3",  # type: ignore[arg-type]
        retention_operator_token="t1",  # type: ignore[arg-type]
        audit_operator_token="t2",  # type: ignore[arg-type]
        session_key="k" * 32,  # type: ignore[arg-type]
        request_timeout_s=0.5,
    )


@contextlib.asynccontextmanager
async def client_for(
    settings: OpsSettings, billing: FakeBilling, address: str = "192.0.2.1"
) -> AsyncIterator[tuple[LifespanManager, httpx.AsyncClient]]:
    """The dashboard running against the fake billing, and a browser at an address."""
    app = create_app(settings, transport=httpx.MockTransport(billing.handle))
    async with LifespanManager(app) as manager, browser(manager, address) as client:
        yield manager, client


def browser(manager: LifespanManager, address: str) -> httpx.AsyncClient:
    """A person's browser at an address, on the dashboard."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app, client=(address, 50000)),
        base_url="http://ops",
    )


async def test_the_page_and_its_state_need_a_staff_sign_in(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    async with client_for(settings, billing) as (_, client):
        page = await client.get("/")
        assert page.status_code == 303
        assert page.headers["location"] == "/sign-in"
        state = await client.get("/api/state")
        assert state.status_code == 401
        assert state.headers["content-type"] == "application/problem+json"
        signed = await client.post("/sign-in", data=OPERATIONS)
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        state = await client.get("/api/state")
        assert state.status_code == 200
        assert state.json()["operator"] == "Olive Ops", "signed in by name"
        assert state.json()["services"][0] == {
            "service": "billing",
            "status": "unreachable",
            "checks": {},
            "requests_per_s": 0.0,
            "server_errors_per_s": 0.0,
        }
        page = await client.get("/")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        out = await client.post("/sign-out")
        assert out.status_code == 303
        assert billing.sessions == {}, "signing out ends the billing session too"
        assert (await client.get("/api/state")).status_code == 401


async def test_only_operations_staff_may_sign_in(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    async with client_for(settings, billing) as (_, client):
        legal = await client.post(
            "/sign-in", data={"email": "lea@quittance.example.com", "password": PASSWORD}
        )
        assert legal.status_code == 403
        assert "operations staff" in legal.text
        assert SESSION_COOKIE not in legal.headers.get("set-cookie", "")
        assert billing.sessions == {}, "the refused staff member's billing session is ended"
        stranger = await client.post(
            "/sign-in", data={"email": "eve@example.com", "password": PASSWORD}
        )
        assert stranger.status_code == 401


async def test_a_removed_staff_member_is_out_at_the_next_check_and_an_outage_blinds_no_one(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    """Billing down: an operator it confirmed lately still watches, but sends nothing back;
    past the grace period, or once billing says they are gone, they are out."""
    settings = OpsSettings(
        **{**settings.model_dump(), "staff_check_interval_s": 0.05, "staff_check_grace_s": 0.3}
    )
    order = {"service": "billing", "id": "t.dlq/0/1", "reason": "INC-1"}
    async with client_for(settings, billing) as (_, client):
        assert (await client.post("/sign-in", data=OPERATIONS)).status_code == 303
        await asyncio.sleep(0.1)
        billing.down = True
        assert (await client.get("/api/state")).status_code == 200, "billing down: still sees"
        refused = await client.post("/api/dead-letters/redrive", json=order)
        assert refused.status_code == 401, "an unconfirmed operator changes nothing"
        await asyncio.sleep(0.4)
        assert (await client.get("/api/state")).status_code == 401, "past the grace period"
        billing.down = False
        assert (await client.get("/api/state")).status_code == 200, "confirmed again"
        del billing.staff["olive@quittance.example.com"]
        await asyncio.sleep(0.1)
        assert (await client.get("/api/state")).status_code == 401
        assert (await client.get("/")).status_code == 303


async def test_a_forged_or_expired_session_is_refused_and_the_billing_session_cannot_be_read(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    async with client_for(settings, billing) as (_, client):
        assert (await client.post("/sign-in", data=OPERATIONS)).status_code == 303
        genuine = client.cookies[SESSION_COOKIE]
        (token,) = billing.sessions
        opened = base64.urlsafe_b64decode(genuine + "=" * (-len(genuine) % 4))
        assert token.encode() not in opened, "the billing session is encrypted in the cookie"
        assert b"Olive" not in opened
        forged = Fernet(Fernet.generate_key()).encrypt(
            json.dumps(["s", "Someone Else", token, "csrf-" + token]).encode()
        )
        client.cookies.set(SESSION_COOKIE, forged.decode())
        assert (await client.get("/api/state")).status_code == 401, "another key"
        tampered = genuine[:-8] + ("A" if genuine[-8] != "A" else "B") + genuine[-7:]
        client.cookies.set(SESSION_COOKIE, tampered)
        assert (await client.get("/api/state")).status_code == 401, "a changed byte"
        client.cookies.set(SESSION_COOKIE, genuine)
        assert (await client.get("/api/state")).status_code == 200, "the genuine one works"
    expired = OpsSettings(**{**settings.model_dump(), "session_hours": 0.0001})
    async with client_for(expired, billing) as (_, client):
        await asyncio.sleep(1.1)  # Fernet dates tokens in whole seconds
        client.cookies.set(SESSION_COOKIE, genuine)
        assert (await client.get("/api/state")).status_code == 401, "past session_hours"


async def test_guessing_passwords_locks_that_address_out_for_a_minute_and_no_one_else(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    async with (
        client_for(settings, billing, address="198.51.100.7") as (manager, guesser),
        browser(manager, "192.0.2.44") as colleague,
    ):
        for _ in range(settings.sign_in_failures_per_minute):
            wrong = await guesser.post("/sign-in", data={**OPERATIONS, "password": "guess"})
            assert wrong.status_code == 401
            assert "do not sign in" in wrong.text
        locked = await guesser.post("/sign-in", data=OPERATIONS)
        assert locked.status_code == 429, "even the right password waits out the lock"
        assert SESSION_COOKIE not in locked.headers.get("set-cookie", "")
        assert len(billing.sessions) == 0, "a locked address never reaches billing"
        assert (await colleague.post("/sign-in", data=OPERATIONS)).status_code == 303
        # Billing throttles per address too: it is told whose attempt each one was.
        assert billing.forwarded == ["198.51.100.7"] * 5 + ["192.0.2.44"]


async def test_billing_failing_is_said_and_counted_as_no_wrong_password(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    async with client_for(settings, billing) as (_, client):
        billing.failing = True
        for _ in range(settings.sign_in_failures_per_minute + 1):
            failed = await client.post("/sign-in", data=OPERATIONS)
            assert failed.status_code == 503, "not a wrong password, and no lock"
            assert "try again" in failed.text
        billing.failing = False
        assert (await client.post("/sign-in", data=OPERATIONS)).status_code == 303


async def test_a_redrive_is_json_only_so_no_form_of_another_site_can_send_one(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    async with client_for(settings, billing) as (_, client):
        assert (await client.post("/sign-in", data=OPERATIONS)).status_code == 303
        as_form = await client.post(
            "/api/dead-letters/redrive",
            content=b'{"service": "billing", "id": "t.dlq/0/1", "reason": "INC-1"}',
            headers={"content-type": "text/plain"},
        )
        assert as_form.status_code == 415


async def test_hostile_input_is_refused_with_a_problem_naming_the_field(
    settings: OpsSettings, billing: FakeBilling
) -> None:
    async with client_for(settings, billing) as (_, client):
        long = await client.post("/sign-in", data={**OPERATIONS, "password": "x" * 2000})
        assert long.status_code == 422
        assert "password" in long.text
        long = await client.post("/sign-in", data={**OPERATIONS, "email": "x" * 400})
        assert long.status_code == 422
        assert "email" in long.text
        missing = await client.post("/sign-in", data={"email": OPERATIONS["email"]})
        assert missing.status_code == 422
        assert "password" in missing.text
        assert (await client.get("/static/../main.py")).status_code == 404
        assert (await client.get("/static/settings.py")).status_code == 404


def test_production_refuses_the_development_session_key() -> None:
    with pytest.raises(ValueError, match="session_key"):
        OpsSettings(environment="production")


@pytest.mark.clause("TLS")
def test_tls_production_reads_the_services_over_https_only() -> None:
    """The dashboard sends operator tokens and staff passwords: plaintext is refused."""
    names = ("billing", "notifications", "retention", "audit")
    real_secrets = {
        "session_key": "a-real-session-key",
        **{f"{name}_operator_token": f"a-real-{name}-token" for name in names},
    }
    over_https = {name: f"https://{name}.internal" for name in names}
    assert OpsSettings(environment="production", services=over_https, **real_secrets)
    with pytest.raises(ValueError, match=r"plaintext connections .*\['audit'\]"):
        OpsSettings(
            environment="production",
            services=over_https | {"audit": "http://audit.internal"},
            **real_secrets,
        )


@pytest.mark.parametrize(
    ("order", "field"),
    [
        ({"service": "nowhere", "id": "t.dlq/0/1", "reason": "INC-1"}, "service"),
        ({"service": "billing", "id": "t.dlq/0/1 x", "reason": "INC-1"}, "id"),
        ({"service": "billing", "id": "", "reason": "INC-1"}, "id"),
        ({"service": "billing", "id": "t.dlq/0/1", "reason": "   "}, "reason"),
        ({"service": "billing", "id": "t.dlq/0/1", "reason": "INC\u0000"}, "reason"),
        ({"service": "billing", "id": "t.dlq/0/1", "reason": "card 4111 1111 1111 1111"}, "reason"),
        ({"service": "billing", "id": "t.dlq/0/1", "reason": "r", "operator": "me"}, "operator"),
    ],
)
async def test_a_redrive_order_names_the_field_it_cannot_take(
    settings: OpsSettings, billing: FakeBilling, order: dict[str, str], field: str
) -> None:
    """Hostile or wrong input: a problem naming the field, and no service is asked anything."""
    async with client_for(settings, billing) as (_, client):
        refused = await client.post("/api/dead-letters/redrive", json=order)
        assert refused.status_code == 401, "signed-in operators only"
        await client.post("/sign-in", data=OPERATIONS)
        refused = await client.post("/api/dead-letters/redrive", json=order)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in refused.json()["errors"]][-1] == field
