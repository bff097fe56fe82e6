"""PLAN-RETENTION, COLLECTED, LAW: retention's sweep, on the real servers with billing and
notifications running: a dry run lists what is past each plan's time and deletes nothing; the
sweep deletes exactly that, keeps what a longer plan keeps, and nothing of an account on hold."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from billing.main import add_security_admin
from billing.main import create_app as create_billing
from billing.settings import BillingSettings
from devstack.stack import Stack
from devstack.testing import MailCatcher, add_staff, enrol_staff, eventually, running
from notifications.main import create_app as create_notifications
from notifications.settings import NotificationsSettings, SmtpSettings
from retention.domain import PLANS
from retention.main import create_app as create_retention
from retention.settings import RetentionSettings
from shared.signing import SigningKey

pytestmark = [pytest.mark.integration, pytest.mark.clause("PLAN-RETENTION", "COLLECTED", "LAW")]
OPERATOR = {"Authorization": "Bearer test-retention-operator-token"}
PASSWORD = "a passphrase for the sweep"
# Per table: the time column the plan's period runs from, and how far back a row is set: past
# free's time (30 days of request metadata, 90 of delivery logs), inside standard's (90, 365).
BACKDATED = {
    ("billing", "web_session"): ("last_seen_at", 45),
    ("billing", "sign_in_failure"): ("created_at", 45),
    ("billing", "email_delivery"): ("changed_at", 120),
    ("notifications", "outgoing_email"): ("created_at", 120),
}


def _url(settings: Any) -> str:
    return str(settings.database_url).replace("+asyncpg", "")


async def _count(url: str, table: str, account_id: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(
            await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE account_id = $1",  # noqa: S608
                uuid.UUID(account_id),
            )
        )
    finally:
        await connection.close()


async def _open(api: httpx.AsyncClient, plan: str, mail: MailCatcher) -> dict[str, Any]:
    """An account of the plan whose owner signed in twice and failed once, and who invited a
    colleague (an email, in notifications' queue and billing's delivery log)."""
    email = f"{plan}-{uuid.uuid4().hex[:8]}@sweep.example.com"
    opened = await api.post(
        "/accounts",
        json={
            "name": f"{plan} Ltd",
            "plan": plan,
            "owner": {"name": "Ada", "email": email, "password": PASSWORD},
        },
    )
    assert opened.status_code == 201, opened.text
    for _ in range(2):
        assert (
            await api.post("/sessions", json={"email": email, "password": PASSWORD})
        ).status_code == 201
    assert (
        await api.post("/sessions", json={"email": email, "password": "not the passphrase"})
    ).status_code == 401
    api.cookies.clear()
    colleague = f"colleague-{uuid.uuid4().hex[:8]}@sweep.example.com"
    invited = await api.post(
        "/users",
        headers={"Authorization": f"Bearer {opened.json()['api_key']}"},
        json={"name": "Bo", "email": colleague, "role": "accountant"},
    )
    assert invited.status_code == 201, invited.text
    await mail.wait_for(lambda messages: any(colleague in m["to"] for m in messages))
    return {"id": opened.json()["account"]["id"], "plan": plan}


async def _completed(client: httpx.AsyncClient, sweep_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        listed = await client.get("/sweeps", headers=OPERATOR)
        assert listed.status_code == 200, listed.text
        found = next(s for s in listed.json() if s["sweep_id"] == sweep_id)
        return found if found["completed_at"] else None

    return await eventually(done, what="the sweep's every report", timeout=60)


@pytest.mark.clause("PLAN-RETENTION")
async def test_plan_retention_a_dry_run_lists_then_the_sweep_deletes_past_each_plans_time(
    service_env: Callable[[str], dict[str, Any]], infrastructure: Stack, mail: MailCatcher
) -> None:
    billing_settings = BillingSettings(**service_env("billing"))
    notifications_settings = NotificationsSettings(
        **service_env("notifications"),
        smtp=SmtpSettings(host="127.0.0.1", port=infrastructure.ports.smtp),
    )
    retention_settings = RetentionSettings(
        **service_env("retention"),
        certificate_key="sweep-certificate-key",  # type: ignore[arg-type]
        certificate_signing_key=SigningKey.generate().private_pem(),  # type: ignore[arg-type]
    )
    urls = {"billing": _url(billing_settings), "notifications": _url(notifications_settings)}
    async with (
        running(create_notifications(notifications_settings)),
        running(create_retention(retention_settings), base_url="http://retention") as retention,
        running(
            create_billing(billing_settings),
            base_url="http://billing",
            client_address="198.51.100.77",  # sign-ins of its own: no other test's throttle
        ) as api,
    ):
        plans = (await retention.get("/plans")).json()["plans"]
        assert plans["free"]["kept_days"] == {"delivery-log": 90, "request-metadata": 30}
        accounts = {
            "free": await _open(api, "free", mail),
            "standard": await _open(api, "standard", mail),
            "held": await _open(api, "free", mail),
        }
        admin_email = f"sec-{uuid.uuid4().hex[:8]}@quittance.example.com"
        _, code = await add_security_admin(billing_settings, name="Sasha", email=admin_email)
        admin = await enrol_staff(api, email=admin_email, code=code)
        _, legal = await add_staff(api, admin, roles=["legal"], name="Lea Legal")
        hold = await api.post(
            "/staff/legal-holds",
            headers=legal,
            json={
                "account_id": accounts["held"]["id"],
                "legal_basis": "Court order 2030/117",
                "reason": "Litigation about invoices",
            },
        )
        assert hold.status_code == 201, hold.text

        async def settled() -> bool:
            """Every row to backdate exists, and notifications knows of the hold."""
            for (service, table), _ in BACKDATED.items():
                for account in accounts.values():
                    if not await _count(urls[service], table, account["id"]):
                        return False
            return await _count(urls["notifications"], "legal_hold", accounts["held"]["id"]) == 1

        await eventually(settled, what="the accounts' rows and the hold everywhere", timeout=60)
        for (service, table), (column, days) in BACKDATED.items():
            connection = await asyncpg.connect(urls[service])
            try:
                for account in accounts.values():
                    # One row of each account (the oldest) is set back.
                    await connection.execute(
                        f"UPDATE {table} SET {column} = now() - make_interval(days => $2) "  # noqa: S608
                        f"WHERE ctid = (SELECT ctid FROM {table} WHERE account_id = $1 "
                        f"ORDER BY {column} LIMIT 1)",
                        uuid.UUID(account["id"]),
                        days,
                    )
            finally:
                await connection.close()
        before = {
            (service, table, name): await _count(urls[service], table, account["id"])
            for (service, table) in BACKDATED
            for name, account in accounts.items()
        }

        # The dry run: what would go, per table, and when the next rows fall due; nothing goes.
        # The sweep of these accounts (the test database knows many more): an operator's
        # look at a few, swept the way the daily one sweeps them all.
        named = {"account_id": [account["id"] for account in accounts.values()]}
        for wrong, field in (({"account_id": "nope"}, "account_id"), ({"dry_run": "x"}, "dry_run")):
            refused = await retention.post("/sweeps", headers=OPERATOR, params=wrong)
            assert refused.status_code == 422, refused.text
            assert refused.json()["errors"][0]["field"] == field
        dry = await retention.post("/sweeps", headers=OPERATOR, params={"dry_run": "true", **named})
        assert dry.status_code == 202, dry.text
        # Retention learnt each account's plan from billing.
        assert dry.json()["accounts"] == len(accounts)
        listed = await _completed(retention, dry.json()["sweep_id"])
        assert listed["dry_run"]
        would = {(t["service"], t["table"]): t for t in listed["tables"]}
        for key in BACKDATED:
            assert would[key]["rows"] == 1, key  # the free account's; not the held one's
            assert would[key]["oldest_at"] is not None
            assert would[key]["next_due_at"] is not None, "the rows that stay fall due later"
        assert listed["held_reports"] == 2, "the held account's two services only counted"
        assert listed["rows"] == len(BACKDATED)
        after_dry_run = {
            (service, table, name): await _count(urls[service], table, account["id"])
            for (service, table) in BACKDATED
            for name, account in accounts.items()
        }
        assert after_dry_run == before, "a dry run deletes nothing"

        # The sweep: exactly the free account's rows past free's time go.
        real = await retention.post("/sweeps", headers=OPERATOR, params=named)
        assert real.status_code == 202, real.text
        done = await _completed(retention, real.json()["sweep_id"])
        assert not done["dry_run"]
        deleted = {(t["service"], t["table"]): t["rows"] for t in done["tables"]}
        assert {key: deleted[key] for key in BACKDATED} == dict.fromkeys(BACKDATED, 1)
        for service, table, name in before:
            left = await _count(urls[service], table, accounts[name]["id"])
            expected = before[(service, table, name)] - (1 if name == "free" else 0)
            assert left == expected, (service, table, name)

        refused = await retention.post("/sweeps", params={"dry_run": "true"})
        assert refused.status_code == 401
        invalid = await retention.post("/sweeps", headers=OPERATOR, params={"dry_run": "maybe"})
        assert invalid.status_code == 422
        assert invalid.json()["errors"][0]["field"] == "dry_run"
    assert set(plans) == set(PLANS)
