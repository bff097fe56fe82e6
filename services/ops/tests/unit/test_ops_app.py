"""Sign-in to the dashboard: only operations staff with the password, never by guessing."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgi_lifespan import LifespanManager
from itsdangerous import TimestampSigner

from ops.main import SESSION_COOKIE, create_app
from ops.settings import OpsSettings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def settings() -> OpsSettings:
    # Nothing listens on port 9: every service reads as unreachable, which is what we show.
    return OpsSettings(
        environment="test",
        services={"billing": "http://127.0.0.1:9"},
        billing_operator_token="t0",  # type: ignore[arg-type]
        notifications_operator_token="t3",  # type: ignore[arg-type]
        retention_operator_token="t1",  # type: ignore[arg-type]
        audit_operator_token="t2",  # type: ignore[arg-type]
        sign_in_password=PASSWORD,  # type: ignore[arg-type]
        session_key="k" * 32,  # type: ignore[arg-type]
        request_timeout_s=0.5,
    )


async def client_for(settings: OpsSettings) -> tuple[LifespanManager, httpx.AsyncClient]:
    manager = LifespanManager(create_app(settings))
    await manager.__aenter__()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://ops"
    )
    return manager, client


async def test_the_page_and_its_state_need_a_sign_in(settings: OpsSettings) -> None:
    manager, client = await client_for(settings)
    try:
        page = await client.get("/")
        assert page.status_code == 303
        assert page.headers["location"] == "/sign-in"
        state = await client.get("/api/state")
        assert state.status_code == 401
        assert state.headers["content-type"] == "application/problem+json"
        signed = await client.post("/sign-in", data={"password": PASSWORD})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        state = await client.get("/api/state")
        assert state.status_code == 200
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
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)


async def test_a_forged_or_expired_session_is_refused(settings: OpsSettings) -> None:
    manager, client = await client_for(settings)
    try:
        forged = TimestampSigner("not the key", salt="quittance-ops-session").sign(b"operations")
        client.cookies.set(SESSION_COOKIE, forged.decode())
        assert (await client.get("/api/state")).status_code == 401
        expired = OpsSettings(**{**settings.model_dump(), "session_hours": 0.0001})
        old = TimestampSigner(
            settings.session_key.get_secret_value(), salt="quittance-ops-session"
        ).sign(b"operations")
        client.cookies.set(SESSION_COOKIE, old.decode())
        assert (await client.get("/api/state")).status_code == 200, "the genuine one works"
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)
    manager, client = await client_for(expired)
    try:
        await asyncio.sleep(1.1)  # itsdangerous counts whole seconds
        client.cookies.set(SESSION_COOKIE, old.decode())
        assert (await client.get("/api/state")).status_code == 401, "past session_hours"
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)


async def test_guessing_the_password_locks_sign_in_for_a_minute(settings: OpsSettings) -> None:
    manager, client = await client_for(settings)
    try:
        for _ in range(settings.sign_in_failures_per_minute):
            wrong = await client.post("/sign-in", data={"password": "guess"})
            assert wrong.status_code == 401
            assert "not right" in wrong.text
        locked = await client.post("/sign-in", data={"password": PASSWORD})
        assert locked.status_code == 429, "even the right password waits out the lock"
        assert SESSION_COOKIE not in locked.headers.get("set-cookie", "")
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)


async def test_hostile_input_is_refused_with_a_problem_naming_the_field(
    settings: OpsSettings,
) -> None:
    manager, client = await client_for(settings)
    try:
        long = await client.post("/sign-in", data={"password": "x" * 2000})
        assert long.status_code == 422
        assert "password" in long.text
        missing = await client.post("/sign-in", data={})
        assert missing.status_code == 422
        assert "password" in missing.text
        assert (await client.get("/static/../main.py")).status_code == 404
        assert (await client.get("/static/settings.py")).status_code == 404
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)


def test_production_refuses_the_development_password() -> None:
    with pytest.raises(ValueError, match="sign_in_password"):
        OpsSettings(environment="production")


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
    settings: OpsSettings, order: dict[str, str], field: str
) -> None:
    """Hostile or wrong input: a problem naming the field, and no service is asked anything."""
    manager, client = await client_for(settings)
    try:
        refused = await client.post("/api/dead-letters/redrive", json=order)
        assert refused.status_code == 401, "signed-in operators only"
        await client.post("/sign-in", data={"password": PASSWORD})
        refused = await client.post("/api/dead-letters/redrive", json=order)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in refused.json()["errors"]][-1] == field
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)
