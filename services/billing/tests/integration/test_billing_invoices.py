"""Invoices, complete: discounts and taxes per line, payment terms, void; on real servers."""

from __future__ import annotations

import asyncio
import uuid
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


@pytest.mark.clause("LEAST-ACCESS")
async def test_a_reader_cannot_void(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    """LEAST-ACCESS: a read-only key changes no invoice."""
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


async def _credit(
    api: httpx.AsyncClient, headers: dict[str, str], invoice_id: str, **body: Any
) -> httpx.Response:
    return await api.post(
        "/credit-notes", headers=headers, json={"invoice_id": invoice_id, "reason": "x"} | body
    )


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
    invoice_id = issued.json()["id"]
    # Two of the three consulting hours (line 1), at the invoice's price, discount and rate.
    hours = {"position": 1, "quantity": "2"}
    first = await _credit(api, headers, invoice_id, reason="Not done", lines=[hours])
    assert first.status_code == 201, first.text
    note = first.json()
    assert note["number"] == "CN-000001"
    line = note["lines"][0]
    assert (line["invoice_line_position"], line["description"]) == (1, "Consulting")
    assert (line["amount"], line["discount_amount"], line["net_amount"]) == (
        "66.66",
        "8.33",  # 8.3325
        "58.33",
    )
    assert (note["subtotal"], note["tax_total"], note["total"]) == ("58.33", "11.67", "70.00")
    assert note["taxes"] == [{"rate": "20", "taxable_amount": "58.33", "tax_amount": "11.67"}]
    invoice = (await api.get(f"/invoices/{invoice_id}", headers=headers)).json()
    assert (invoice["credited_total"], invoice["amount_due"]) == ("70.00", "93.67")
    assert invoice["status"] == "issued"
    assert invoice["lines"] == issued.json()["lines"], "the invoice itself is never changed"

    two_more = await _credit(api, headers, invoice_id, lines=[{"position": 1, "quantity": "2"}])
    assert two_more.status_code == 422, "one hour of the three is left"
    assert two_more.json()["errors"][0]["field"] == "lines.0.quantity"
    no_line = await _credit(api, headers, invoice_id, lines=[{"position": 9, "quantity": "1"}])
    assert no_line.json()["errors"][0]["field"] == "lines.0.position"
    twice = await _credit(api, headers, invoice_id, lines=[hours, hours])
    assert twice.status_code == 422, "each line once"
    voided = await api.post(
        f"/invoices/{invoice_id}/void", headers=headers, json={"reason": "too late"}
    )
    assert voided.status_code == 409, "credited in part: credit the rest, never void"

    rest = await _credit(api, headers, invoice_id, reason="The rest")
    assert rest.status_code == 201, rest.text
    assert rest.json()["number"] == "CN-000002", "one series per account, no gaps"
    assert Decimal(rest.json()["total"]) + Decimal("70.00") == Decimal(issued.json()["total"])
    credited = (await api.get(f"/invoices/{invoice_id}", headers=headers)).json()
    assert (credited["credited_total"], credited["amount_due"]) == ("163.67", "0.00")
    nothing_left = await _credit(api, headers, invoice_id)
    assert nothing_left.status_code == 409

    listed = await api.get("/credit-notes", headers=headers, params={"invoice_id": invoice_id})
    assert [n["number"] for n in listed.json()] == ["CN-000002", "CN-000001"]
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


@pytest.mark.parametrize(
    ("currency", "unit_price", "rate"),
    [("EUR", "0.05", "10"), ("JPY", "5", "10"), ("BHD", "0.005", "10"), ("EUR", "0.33", "7.7")],
)
async def test_credits_one_unit_at_a_time_add_up_to_the_invoice_to_the_minor_unit(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    currency: str,
    unit_price: str,
    rate: str,
) -> None:
    headers = account["headers"]
    lines = [
        {"description": f"Unit {i}", "quantity": "3", "unit_price": unit_price, "tax_rate": rate}
        for i in range(2)
    ]
    body = _taxed_invoice(customer["id"], currency=currency, lines=lines, issue=True)
    issued = (await api.post("/invoices", headers=headers, json=body)).json()
    credited = Decimal(0)
    for position in (1, 2):
        for _ in range(3):
            one = await _credit(
                api, headers, issued["id"], lines=[{"position": position, "quantity": "1"}]
            )
            assert one.status_code == 201, one.text
            credited += Decimal(one.json()["total"])
    assert credited == Decimal(issued["total"]), "every cent credited, not one more"
    final = (await api.get(f"/invoices/{issued['id']}", headers=headers)).json()
    assert Decimal(final["amount_due"]) == 0


async def test_a_draft_or_void_invoice_is_not_credited_and_credit_numbers_never_gap(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any]
) -> None:
    headers = account["headers"]
    draft = await api.post("/invoices", headers=headers, json=_taxed_invoice(customer["id"]))
    assert draft.json()["amount_due"] is None, "a draft is not due"
    refused = await _credit(api, headers, draft.json()["id"])
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["field"] == "invoice_id"
    issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=headers)
    void = await api.post(
        f"/invoices/{issued.json()['id']}/void", headers=headers, json={"reason": "Wrong"}
    )
    assert void.json()["amount_due"] == "0.00"
    assert (await _credit(api, headers, issued.json()["id"])).status_code == 409
    unknown = await _credit(api, headers, str(uuid.uuid4()))
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "invoice_id"
    others = [
        await api.post(
            "/invoices", headers=headers, json=_taxed_invoice(customer["id"], issue=True)
        )
        for _ in range(2)
    ]
    # Three at once on each invoice, one unit each of its three-unit first line.
    credited = await asyncio.gather(
        *(
            _credit(api, headers, invoice.json()["id"], lines=[{"position": 1, "quantity": "1"}])
            for invoice in others
            for _ in range(3)
        )
    )
    assert [c.status_code for c in credited] == [201] * 6
    assert sorted(c.json()["number"] for c in credited) == [f"CN-00000{i}" for i in range(1, 7)]
    for invoice in others:
        again = await _credit(
            api, headers, invoice.json()["id"], lines=[{"position": 1, "quantity": "1"}]
        )
        assert again.status_code == 422, "all three units are credited, none twice"
