"""Invoices, complete: discounts and taxes per line, payment terms, void; on real servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from billing.settings import BillingSettings
from devstack.testing import read_events

pytestmark = pytest.mark.integration


def _taxed_invoice(customer_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "currency": "EUR",
        "due_date": "2030-01-31",
        "lines": [
            # 3 x 33.33 = 99.99, less 12.5% (12.49875 -> 12.50) = 87.49, taxed at 20%
            {
                "description": "Consulting",
                "quantity": "3",
                "unit_price": "33.33",
                "discount_percent": "12.5",
                "tax_rate": "20",
            },
            # 2 x 19.99 = 39.98 at 5.5%
            {"description": "Books", "quantity": "2", "unit_price": "19.99", "tax_rate": "5.5"},
            # 10.00 at 20.000%: the same rate as 20
            {"description": "Support", "quantity": "1", "unit_price": "10", "tax_rate": "20.000"},
            {"description": "Postage", "quantity": "1", "unit_price": "4.5"},
        ],
    } | overrides


async def test_discounts_and_tax_per_rate_make_the_total_on_both_issue_paths(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    headers = account["headers"]
    drafted = await api.post("/invoices", headers=headers, json=_taxed_invoice(customer["id"]))
    assert drafted.status_code == 201, drafted.text
    at_once = await api.post(
        "/invoices", headers=headers, json=_taxed_invoice(customer["id"], issue=True)
    )
    issued = await api.post(f"/invoices/{drafted.json()['id']}/issue", headers=headers)
    for invoice in (drafted.json(), issued.json(), at_once.json()):
        first = invoice["lines"][0]
        assert (first["amount"], first["discount_amount"], first["net_amount"]) == (
            "99.99",
            "12.50",
            "87.49",
        )
        assert (first["discount_percent"], first["tax_rate"]) == ("12.5", "20")
        assert invoice["subtotal"] == "141.97"  # 87.49 + 39.98 + 10 + 4.50
        assert invoice["taxes"] == [
            {"rate": "5.5", "taxable_amount": "39.98", "tax_amount": "2.20"},  # 2.1989
            {"rate": "20", "taxable_amount": "97.49", "tax_amount": "19.50"},  # 19.498
        ]
        assert invoice["tax_total"] == "21.70"
        assert invoice["total"] == "163.67"
    events = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("invoice.issued"),
        count=2,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    for event in events:
        data = event["data"]
        sums = [Decimal(data[name]) for name in ("subtotal", "tax_total", "total")]
        assert sums == [Decimal("141.97"), Decimal("21.70"), Decimal("163.67")]
        assert [(Decimal(t["rate"]), Decimal(t["tax_amount"])) for t in data["taxes"]] == [
            (Decimal("5.5"), Decimal("2.20")),
            (Decimal(20), Decimal("19.50")),
        ]
        assert Decimal(data["lines"][0]["discount_amount"]) == Decimal("12.50")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"discount_percent": "100.5"}, "lines.0.discount_percent"),
        ({"discount_percent": "-1"}, "lines.0.discount_percent"),
        ({"tax_rate": "7.12345"}, "lines.0.tax_rate"),
        ({"tax_rate": 20}, "lines.0.tax_rate"),  # a JSON number: floats lose cents
        ({"tax_rate": "1e1"}, "lines.0.tax_rate"),
    ],
)
async def test_an_implausible_discount_or_rate_is_refused_naming_the_field(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    line: dict[str, Any],
    field: str,
) -> None:
    body = _taxed_invoice(customer["id"])
    body["lines"][0] |= line
    refused = await api.post("/invoices", headers=account["headers"], json=body)
    assert refused.status_code == 422, refused.text
    assert field in {error["field"] for error in refused.json()["errors"]}
    listed = await api.get("/invoices", headers=account["headers"])
    assert listed.json() == []


async def test_the_largest_invoice_taxed_at_100_percent_fits(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any]
) -> None:
    line = {
        "description": "Big",
        "quantity": "1",
        "unit_price": "999999999999.99",
        "tax_rate": "100",
    }
    body = _taxed_invoice(customer["id"], lines=[line] * 500, issue=True)
    issued = await api.post("/invoices", headers=account["headers"], json=body)
    assert issued.status_code == 201, issued.text
    assert issued.json()["total"] == "999999999999990.00"


async def test_payment_terms_set_the_due_date_at_issue_and_the_account_has_a_default(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any]
) -> None:
    headers = account["headers"]
    assert (await api.get("/account", headers=headers)).json()["payment_terms_days"] == 30
    on_terms = _taxed_invoice(customer["id"], due_date=None, payment_terms_days=14)
    drafted = await api.post("/invoices", headers=headers, json=on_terms)
    assert drafted.status_code == 201, drafted.text
    assert drafted.json()["due_date"] is None
    assert drafted.json()["payment_terms_days"] == 14
    issued = (await api.post(f"/invoices/{drafted.json()['id']}/issue", headers=headers)).json()
    issue_date = date.fromisoformat(issued["issue_date"])
    assert date.fromisoformat(issued["due_date"]) == issue_date + timedelta(days=14)

    changed = await api.patch("/account", headers=headers, json={"payment_terms_days": 0})
    assert changed.status_code == 200, changed.text
    by_default = {k: v for k, v in _taxed_invoice(customer["id"]).items() if k != "due_date"}
    at_once = await api.post("/invoices", headers=headers, json=by_default | {"issue": True})
    assert at_once.json()["payment_terms_days"] == 0
    assert at_once.json()["due_date"] == at_once.json()["issue_date"], "due on receipt"

    both = await api.post(
        "/invoices", headers=headers, json=_taxed_invoice(customer["id"], payment_terms_days=7)
    )
    assert both.status_code == 422
    assert [e["field"] for e in both.json()["errors"]] == ["payment_terms_days"]
    too_long = await api.patch("/account", headers=headers, json={"payment_terms_days": 366})
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "payment_terms_days"


async def test_voiding_keeps_the_number_emits_invoice_voided_and_happens_once(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    headers = account["headers"]
    draft = await api.post("/invoices", headers=headers, json=_taxed_invoice(customer["id"]))
    not_issued = await api.post(
        f"/invoices/{draft.json()['id']}/void", headers=headers, json={"reason": "typo"}
    )
    assert not_issued.status_code == 409
    assert not_issued.json()["errors"][0]["field"] == "status"
    issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=headers)
    url = f"/invoices/{issued.json()['id']}/void"
    no_reason = await api.post(url, headers=headers, json={})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "reason"
    voided = await api.post(url, headers=headers, json={"reason": "Billed to the wrong Bob"})
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "void"
    assert voided.json()["number"] == issued.json()["number"], "its number stays taken"
    voided_at = datetime.fromisoformat(voided.json()["voided_at"])
    assert abs(voided_at - datetime.now(UTC)) < timedelta(minutes=1)
    again = await api.post(url, headers=headers, json={"reason": "twice"})
    assert again.status_code == 409
    next_one = await api.post(
        "/invoices", headers=headers, json=_taxed_invoice(customer["id"], issue=True)
    )
    assert next_one.json()["number"] == "INV-000002", "numbering goes on past the void one"
    listed = await api.get("/invoices", headers=headers, params={"status": "void"})
    assert [i["id"] for i in listed.json()] == [issued.json()["id"]]
    (event,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("invoice.voided"),
        count=1,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    assert event["data"]["number"] == issued.json()["number"]
    assert event["data"]["reason"] == "Billed to the wrong Bob"


async def test_a_reader_cannot_void(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    headers = account["headers"]
    issued = await api.post(
        "/invoices", headers=headers, json=_taxed_invoice(customer["id"], issue=True)
    )
    made = await api.post(
        "/api-keys", headers=headers, json={"name": "reader", "scopes": ["invoices:read"]}
    )
    reader = {"Authorization": f"Bearer {made.json()['api_key']}"}
    refused = await api.post(
        f"/invoices/{issued.json()['id']}/void", headers=reader, json={"reason": "no"}
    )
    assert refused.status_code == 403, refused.text
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        status = await connection.fetchval(
            "SELECT status::text FROM invoice WHERE id = $1", issued.json()["id"]
        )
    finally:
        await connection.close()
    assert status == "ISSUED"


async def test_credit_notes_correct_an_issued_invoice_in_their_own_gapless_series(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    headers = account["headers"]
    issued = await api.post(
        "/invoices", headers=headers, json=_taxed_invoice(customer["id"], issue=True)
    )
    url = f"/invoices/{issued.json()['id']}/credit-notes"
    # Two of the three consulting hours, at the invoice's discount and rate.
    hours = {
        "description": "Consulting, 2 hours not done",
        "quantity": "2",
        "unit_price": "33.33",
        "discount_percent": "12.5",
        "tax_rate": "20",
    }
    first = await api.post(url, headers=headers, json={"reason": "Not done", "lines": [hours]})
    assert first.status_code == 201, first.text
    note = first.json()
    assert note["number"] == "CN-000001"
    assert (note["subtotal"], note["tax_total"], note["total"]) == ("58.33", "11.67", "70.00")
    assert note["taxes"] == [{"rate": "20", "taxable_amount": "58.33", "tax_amount": "11.67"}]
    invoice = (await api.get(f"/invoices/{issued.json()['id']}", headers=headers)).json()
    assert (invoice["credited_total"], invoice["amount_due"]) == ("70.00", "93.67")
    assert invoice["status"] == "issued"
    assert invoice["lines"] == issued.json()["lines"], "the invoice itself is never changed"

    whole = await api.post(url, headers=headers, json={"reason": "All of it"})
    assert whole.status_code == 409, "part is credited: the lines must be named"
    assert whole.json()["errors"][0]["field"] == "lines"
    too_much = {"reason": "Too much", "lines": [hours | {"quantity": "3"}]}
    over = await api.post(url, headers=headers, json=too_much)
    assert over.status_code == 422, over.text
    assert over.json()["errors"][0]["field"] == "lines"
    nothing = {"reason": "Nothing", "lines": [hours | {"unit_price": "0"}]}
    assert (await api.post(url, headers=headers, json=nothing)).status_code == 422

    other = await api.post(
        "/invoices", headers=headers, json=_taxed_invoice(customer["id"], issue=True)
    )
    full = await api.post(
        f"/invoices/{other.json()['id']}/credit-notes", headers=headers, json={"reason": "Wrong"}
    )
    assert full.status_code == 201, full.text
    assert full.json()["number"] == "CN-000002", "one series per account, no gaps"
    assert full.json()["total"] == other.json()["total"]
    assert len(full.json()["lines"]) == len(other.json()["lines"])
    credited = (await api.get(f"/invoices/{other.json()['id']}", headers=headers)).json()
    assert credited["amount_due"] == "0.00"
    again = await api.post(
        f"/invoices/{other.json()['id']}/credit-notes", headers=headers, json={"reason": "Again"}
    )
    assert again.status_code == 409

    listed = await api.get(
        "/credit-notes", headers=headers, params={"invoice_id": issued.json()["id"]}
    )
    assert [n["number"] for n in listed.json()] == ["CN-000001"]
    fetched = await api.get(f"/credit-notes/{note['id']}", headers=headers)
    assert fetched.json() == note
    events = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("credit_note.issued"),
        count=2,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    assert [e["data"]["number"] for e in events] == ["CN-000001", "CN-000002"]
    assert events[0]["data"]["invoice_number"] == issued.json()["number"]
    assert events[0]["data"]["customer"]["email"] == "bob@buyer.example.com"
    assert events[0]["data"]["reason"] == "Not done"


async def test_a_draft_or_void_invoice_is_not_credited_and_credit_numbers_never_gap(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any]
) -> None:
    headers = account["headers"]
    draft = await api.post("/invoices", headers=headers, json=_taxed_invoice(customer["id"]))
    refused = await api.post(
        f"/invoices/{draft.json()['id']}/credit-notes", headers=headers, json={"reason": "x"}
    )
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["field"] == "status"
    issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=headers)
    await api.post(
        f"/invoices/{issued.json()['id']}/void", headers=headers, json={"reason": "Wrong"}
    )
    void = await api.post(
        f"/invoices/{issued.json()['id']}/credit-notes", headers=headers, json={"reason": "x"}
    )
    assert void.status_code == 409
    others = [
        await api.post(
            "/invoices", headers=headers, json=_taxed_invoice(customer["id"], issue=True)
        )
        for _ in range(4)
    ]
    credited = await asyncio.gather(
        *(
            api.post(
                f"/invoices/{invoice.json()['id']}/credit-notes",
                headers=headers,
                json={"reason": "At once"},
            )
            for invoice in others
        )
    )
    assert sorted(c.json()["number"] for c in credited) == [
        "CN-000001",
        "CN-000002",
        "CN-000003",
        "CN-000004",
    ], "refusals took no number, concurrent notes no gap"
