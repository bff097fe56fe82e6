"""Statements: a customer's invoices and credit notes over a period, balances and aging."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from billing.settings import BillingSettings

pytestmark = pytest.mark.integration


def today() -> date:
    """Today where the accounts here are (UTC), asked each time: a run may cross midnight."""
    return datetime.now(UTC).date()


async def _issue(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    customer_id: str,
    price: str,
    currency: str = "EUR",
) -> dict[str, Any]:
    issued = await api.post(
        "/invoices",
        headers=headers,
        json={
            "customer_id": customer_id,
            "currency": currency,
            "payment_terms_days": 30,
            "lines": [{"description": "Work", "quantity": "1", "unit_price": price}],
            "issue": True,
        },
    )
    assert issued.status_code == 201, issued.text
    body: dict[str, Any] = issued.json()
    return body


async def _backdate(settings: BillingSettings, invoice_id: str, days: int) -> None:
    """As if issued `days` ago, due 30 days after that."""
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute(
            "UPDATE invoice SET issue_date = current_date - $2::int, "
            "due_date = current_date - $2::int + 30 WHERE id = $1",
            invoice_id,
            days,
        )
    finally:
        await connection.close()


async def test_a_statement_shows_opening_entries_closing_and_aging(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    headers = account["headers"]
    old = await _issue(api, headers, customer["id"], "100")  # before the period: opening
    overdue = await _issue(api, headers, customer["id"], "40")  # 45 days past due
    recent = await _issue(api, headers, customer["id"], "60")  # not yet due
    void = await _issue(api, headers, customer["id"], "999")
    await _issue(api, headers, customer["id"], "7", currency="USD")  # another currency
    await api.post(f"/invoices/{void['id']}/void", headers=headers, json={"reason": "wrong"})
    await _backdate(billing_settings, old["id"], 200)
    await _backdate(billing_settings, overdue["id"], 75)
    credited = await api.post(
        "/credit-notes",
        headers=headers,
        json={
            "invoice_id": recent["id"],
            "reason": "goodwill",
            "lines": [{"position": 1, "quantity": "0.5"}],
        },
    )
    assert credited.status_code == 201, credited.text
    on_old = await api.post(
        "/credit-notes",
        headers=headers,
        json={
            "invoice_id": old["id"],
            "reason": "late",
            "lines": [{"position": 1, "quantity": "0.2"}],
        },
    )
    assert on_old.status_code == 201, on_old.text
    start = today() - timedelta(days=100)
    answered = await api.get(
        f"/statements/{customer['id']}",
        headers=headers,
        params={"start": start.isoformat(), "end": today().isoformat()},
    )
    assert answered.status_code == 200, answered.text
    statement = answered.json()
    assert statement["currency"] == "EUR"
    assert statement["opening_balance"] == "100.00"
    assert [
        (e["kind"], e["number"], e["debit"], e["credit"], e["balance"])
        for e in statement["entries"]
    ] == [
        ("invoice", overdue["number"], "40.00", "0.00", "140.00"),
        ("invoice", recent["number"], "60.00", "0.00", "200.00"),
        ("invoice", void["number"], "999.00", "0.00", "1199.00"),
        ("void", void["number"], "0.00", "999.00", "200.00"),
        ("credit_note", credited.json()["number"], "0.00", "30.00", "170.00"),
        ("credit_note", on_old.json()["number"], "0.00", "20.00", "150.00"),
    ], "a void invoice is owed until the day it is voided; the USD one is on its own statement"
    assert statement["entries"][4]["reference"] == recent["number"]
    assert statement["entries"][5]["reference"] == old["number"], "against one before the period"
    assert (statement["invoiced"], statement["credited"], statement["closing_balance"]) == (
        "1099.00",
        "1049.00",
        "150.00",
    )
    assert statement["aging"] == {
        "current": "30.00",
        "days_1_30": "0.00",
        "days_31_60": "40.00",
        "days_61_90": "0.00",
        "over_90": "80.00",
    }
    yesterday = await api.get(
        f"/statements/{customer['id']}",
        headers=headers,
        params={"start": start.isoformat(), "end": (today() - timedelta(days=1)).isoformat()},
    )
    assert yesterday.json()["closing_balance"] == "140.00", "today's documents come after"
    assert yesterday.json()["aging"]["over_90"] == "100.00", "credits after the end do not count"
    in_dollars = await api.get(
        f"/statements/{customer['id']}",
        headers=headers,
        params={"start": start.isoformat(), "end": today().isoformat(), "currency": "USD"},
    )
    assert in_dollars.json()["closing_balance"] == "7.00"


async def test_a_statement_downloads_as_csv_with_names_that_cannot_run_as_formulas(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = account["headers"]
    hostile = await api.post(
        "/customers",
        headers=headers,
        json={"name": '=HYPERLINK("http://evil.example","x")', "email": "h@buyer.example.com"},
    )
    customer_id = hostile.json()["id"]
    invoice = await _issue(api, headers, customer_id, "12.5")
    answered = await api.get(
        f"/statements/{customer_id}",
        headers=headers,
        params={"start": today().isoformat(), "end": today().isoformat(), "format": "csv"},
    )
    assert answered.status_code == 200, answered.text
    assert answered.headers["content-type"] == "text/csv; charset=utf-8"
    assert answered.headers["content-disposition"].startswith("attachment;")
    assert "\r\n" in answered.text
    rows = list(csv.reader(io.StringIO(answered.text)))
    assert rows[0][1].startswith("'="), "a spreadsheet shows the name, never runs it"
    assert [invoice["number"], "12.50"] == [rows[4][2], rows[4][4]]
    assert rows[-1][1:] == ["12.50", "0.00", "0.00", "0.00", "0.00", ""]
    assert {len(row) for row in rows} == {7}, "every record has the header's fields"


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"start": "2026-02-01", "end": "2026-01-01"}, 422, "end"),
        ({"start": "2000-01-01", "end": "2026-01-01"}, 422, "start"),
        ({"start": "2026-01-01", "end": "2026-01-31", "currency": "XTS"}, 422, "currency"),
        ({"start": "2026-01-01", "end": "2026-01-31", "format": "xlsx"}, 422, "format"),
        ({"end": "0"}, 422, "end"),  # not a Unix time
        ({"start": "1700000000"}, 422, "start"),
    ],
)
async def test_an_implausible_period_is_refused_naming_the_parameter(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    params: dict[str, str],
    status: int,
    field: str,
) -> None:
    answered = await api.get(
        f"/statements/{customer['id']}", headers=account["headers"], params=params
    )
    assert answered.status_code == status, answered.text
    assert field in {e["field"] for e in answered.json()["errors"]}
