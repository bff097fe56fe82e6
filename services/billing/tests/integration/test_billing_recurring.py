"""What billing issues on its own schedule: recurring invoices (each due period once across
runners, missed periods caught up in order, pause, resume and end; a schedule that cannot issue
is paused, not retried forever) and monthly statements (once per customer and month)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from billing.main import create_app
from billing.settings import BillingSettings
from devstack.testing import read_events, running

pytestmark = pytest.mark.integration


def today() -> date:
    """Today where the accounts here are (UTC), asked each time: a run may cross midnight."""
    return datetime.now(UTC).date()


@pytest.fixture(scope="module")
def app(billing_settings: BillingSettings) -> FastAPI:
    # The background runner looks once at start, then waits an hour: the tests run it.
    settings = billing_settings.model_copy(update={"recurring_interval_s": 3600})
    return create_app(settings)


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app, base_url="http://billing") as client:
        yield client


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> dict[str, Any]:
    opened = await client.post(
        "/accounts",
        json={
            "name": "Monthly Ltd",
            "owner": {"name": "M", "email": f"m-{uuid.uuid4().hex[:6]}@m.ex"},
        },
    )
    headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
    customer = await client.post(
        "/customers", headers=headers, json={"name": "Sub Scriber", "email": "sub@scriber.example"}
    )
    return {
        "headers": headers,
        "customer_id": customer.json()["id"],
        "account_id": opened.json()["account"]["id"],
    }


async def _schedule(
    client: httpx.AsyncClient, owner: dict[str, Any], **changes: Any
) -> dict[str, Any]:
    body = {
        "customer_id": owner["customer_id"],
        "currency": "EUR",
        "payment_terms_days": 14,
        "lines": [
            {"description": "Hosting", "quantity": "1", "unit_price": "49", "tax_rate": "20"}
        ],
        "interval": "month",
        "start_date": today().isoformat(),
        **changes,
    }
    made = await client.post("/recurring-invoices", headers=owner["headers"], json=body)
    assert made.status_code == 201, made.text
    schedule: dict[str, Any] = made.json()
    return schedule


async def _invoices(client: httpx.AsyncClient, owner: dict[str, Any]) -> list[dict[str, Any]]:
    found = await client.get("/invoices", headers=owner["headers"], params={"limit": 100})
    invoices: list[dict[str, Any]] = found.json()
    return invoices


async def _sql(settings: BillingSettings, query: str, *args: Any) -> None:
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute(query, *args)
    finally:
        await connection.close()


def _runner(app: FastAPI) -> Any:
    return app.state.services.recurring


async def test_a_due_period_is_issued_once_however_many_runners_run(
    app: FastAPI, client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    schedule = await _schedule(client, owner)
    assert schedule["next_run_on"] == today().isoformat()
    now = datetime.now(UTC)
    await asyncio.gather(*(_runner(app).run_due(now=now) for _ in range(3)))
    (invoice,) = await _invoices(client, owner)
    assert invoice["status"] == "issued"
    assert invoice["number"] == "INV-000001"
    assert invoice["total"] == "58.80"
    assert invoice["payment_terms_days"] == 14
    found = (
        await client.get(f"/recurring-invoices/{schedule['id']}", headers=owner["headers"])
    ).json()
    assert found["runs"] == [{"period": today().isoformat(), "invoice_id": invoice["id"]}]
    assert found["periods_done"] == 1
    assert date.fromisoformat(found["next_run_on"]) > today()
    assert await _runner(app).run_due(now=now) == 0  # nothing more is due today


async def test_periods_missed_during_an_outage_are_issued_in_order(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    schedule = await _schedule(client, owner, interval="week")
    three_weeks_ago = today() - timedelta(weeks=3)
    await _sql(
        billing_settings,
        "UPDATE recurring_invoice SET start_date = $2, next_run_on = $2 WHERE id = $1",
        uuid.UUID(schedule["id"]),
        three_weeks_ago,
    )
    await _runner(app).run_due(now=datetime.now(UTC))
    assert len(await _invoices(client, owner)) == 4
    found = (
        await client.get(f"/recurring-invoices/{schedule['id']}", headers=owner["headers"])
    ).json()
    assert [run["period"] for run in found["runs"]] == [
        (today() - timedelta(weeks=weeks)).isoformat() for weeks in (0, 1, 2, 3)
    ]
    assert found["next_run_on"] == (today() + timedelta(weeks=1)).isoformat()


async def test_paused_issues_nothing_resumed_skips_the_past_and_an_end_date_ends_it(
    app: FastAPI, client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    paused = await _schedule(client, owner, start_date=(today() + timedelta(days=1)).isoformat())
    answer = await client.post(
        f"/recurring-invoices/{paused['id']}/pause", headers=owner["headers"]
    )
    assert answer.json()["status"] == "paused"
    await _runner(app).run_due(now=datetime.now(UTC) + timedelta(days=40))
    assert await _invoices(client, owner) == []
    resumed = await client.post(
        f"/recurring-invoices/{paused['id']}/resume", headers=owner["headers"]
    )
    assert resumed.json()["status"] == "active"
    assert date.fromisoformat(resumed.json()["next_run_on"]) >= today()
    ended = await client.delete(f"/recurring-invoices/{paused['id']}", headers=owner["headers"])
    assert (ended.json()["status"], ended.json()["next_run_on"]) == ("ended", None)
    again = await client.post(
        f"/recurring-invoices/{paused['id']}/resume", headers=owner["headers"]
    )
    assert again.status_code == 409

    once = await _schedule(client, owner, end_date=today().isoformat())
    await _runner(app).run_due(now=datetime.now(UTC))
    found = (await client.get(f"/recurring-invoices/{once['id']}", headers=owner["headers"])).json()
    assert (found["status"], found["next_run_on"], len(found["runs"])) == ("ended", None, 1)


async def test_a_schedule_that_cannot_issue_is_paused_and_blocks_no_other(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    broken = await _schedule(client, owner)
    healthy = await _schedule(client, owner)
    bad_lines = [{"description": "Hosting", "quantity": "0", "unit_price": "49"}]
    await _sql(
        billing_settings,
        "UPDATE recurring_invoice SET lines = $2::jsonb WHERE id = $1",
        uuid.UUID(broken["id"]),
        json.dumps(bad_lines),
    )
    await _runner(app).run_due(now=datetime.now(UTC))
    found = (
        await client.get(f"/recurring-invoices/{broken['id']}", headers=owner["headers"])
    ).json()
    assert found["status"] == "paused"
    assert found["last_error"]
    assert found["runs"] == []
    issued = (
        await client.get(f"/recurring-invoices/{healthy['id']}", headers=owner["headers"])
    ).json()
    assert len(issued["runs"]) == 1
    assert len(await _invoices(client, owner)) == 1


async def test_a_schedule_is_refused_with_the_field_named(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    other = await client.post(
        "/accounts",
        json={"name": "Other", "owner": {"name": "O", "email": f"o-{uuid.uuid4().hex[:6]}@o.ex"}},
    )
    others_customer = (
        await client.post(
            "/customers",
            headers={"Authorization": f"Bearer {other.json()['api_key']}"},
            json={"name": "Theirs", "email": "theirs@o.example"},
        )
    ).json()["id"]
    for changes, field in (
        ({"start_date": (today() - timedelta(days=2)).isoformat()}, "start_date"),
        ({"interval_count": 13}, "interval_count"),
        ({"interval": "fortnight"}, "interval"),
        ({"end_date": (today() - timedelta(days=1)).isoformat()}, "end_date"),
        ({"customer_id": others_customer}, "customer_id"),
    ):
        body = {
            "customer_id": owner["customer_id"],
            "lines": [{"description": "Hosting", "quantity": "1", "unit_price": "49"}],
            "interval": "month",
            "start_date": today().isoformat(),
            **changes,
        }
        refused = await client.post("/recurring-invoices", headers=owner["headers"], json=body)
        assert refused.status_code == 422, (changes, refused.text)
        assert refused.json()["errors"][0]["field"].endswith(field), refused.text


async def test_monthly_statements_go_once_to_each_customer_with_last_months_activity(
    app: FastAPI,
    client: httpx.AsyncClient,
    owner: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    patched = await client.patch(
        "/account", headers=owner["headers"], json={"monthly_statements": True}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["monthly_statements"] is True
    quiet = await client.post(
        "/customers", headers=owner["headers"], json={"name": "Quiet", "email": "q@q.example"}
    )
    issued = await client.post(
        "/invoices",
        headers=owner["headers"],
        json={
            "customer_id": owner["customer_id"],
            "currency": "EUR",
            "lines": [{"description": "Hosting", "quantity": "1", "unit_price": "49"}],
            "issue": True,
        },
    )
    last_month = (today().replace(day=1) - timedelta(days=1)).replace(day=5)
    await _sql(
        billing_settings,
        "UPDATE invoice SET issue_date = $2::date, due_date = $2::date + 30, "
        "issued_at = $2::date::timestamptz WHERE id = $1",
        uuid.UUID(issued.json()["id"]),
        last_month,
    )
    monthly = app.state.monthly_statements
    assert await monthly.run_due(now=datetime.now(UTC)) >= 1
    assert await monthly.run_due(now=datetime.now(UTC)) == 0  # once per customer and month
    events = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("statement.issued"),
        count=1,
        key=owner["account_id"],
        keystore=billing_settings.keystore,
    )
    (statement,) = [e["data"] for e in events]
    assert statement["customer"]["customer_id"] == owner["customer_id"]
    assert statement["customer"]["email"] == "sub@scriber.example"
    assert statement["period_start"] == last_month.replace(day=1).isoformat()
    assert [(e["kind"], e["number"]) for e in statement["entries"]] == [
        ("invoice", issued.json()["number"])
    ]
    assert statement["closing_balance"] == "49.00"
    assert quiet.json()["id"] not in json.dumps(events)
