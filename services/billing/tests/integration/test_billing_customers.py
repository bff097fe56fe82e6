"""Customers: tax ids, notes and contacts; the tax id printed on their invoices."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from billing.settings import BillingSettings
from devstack.testing import read_events

pytestmark = pytest.mark.integration

ACME_BUYER = {
    "name": "Buyer SARL",
    "email": "billing@buyer.example.com",
    "address": "1 Rue Haute, Lyon",
    "tax_id": "FR40303265045",
    "notes": "Pays by transfer; see https://buyer.example.com/ap and <script>x</script>",
    "contacts": [
        {"name": "Paula Payable", "email": "paula@buyer.example.com", "role": "Accounts payable"},
        {"name": "Carl Contract", "email": "carl@buyer.example.com"},
    ],
}


async def test_a_customer_keeps_its_tax_id_notes_and_contacts_as_written(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = account["headers"]
    created = await api.post("/customers", headers=headers, json=ACME_BUYER)
    assert created.status_code == 201, created.text
    customer = created.json()
    assert customer["tax_id"] == "FR40303265045"
    assert customer["notes"] == ACME_BUYER["notes"], "stored and answered as written, as JSON"
    assert [(c["name"], c["role"]) for c in customer["contacts"]] == [
        ("Carl Contract", None),
        ("Paula Payable", "Accounts payable"),
    ], "by name"
    read = await api.get(f"/customers/{customer['id']}", headers=headers)
    assert read.json() == customer
    listed = await api.get("/customers", headers=headers)
    assert listed.json() == [customer]

    added = await api.post(
        f"/customers/{customer['id']}/contacts",
        headers=headers,
        json={"name": "Dana Director", "email": "dana@buyer.example.com", "role": "CFO"},
    )
    assert added.status_code == 201, added.text
    carl = customer["contacts"][0]["id"]
    removed = await api.delete(f"/customers/{customer['id']}/contacts/{carl}", headers=headers)
    assert removed.status_code == 204
    again = await api.delete(f"/customers/{customer['id']}/contacts/{carl}", headers=headers)
    assert again.status_code == 404
    names = [
        c["name"]
        for c in (await api.get(f"/customers/{customer['id']}", headers=headers)).json()["contacts"]
    ]
    assert names == ["Dana Director", "Paula Payable"]

    changes = (await api.get("/account/changes", headers=headers)).json()
    contact_changes = [c for c in changes if c["fields"] == ["contacts"]]
    assert [(c["subject"], c["subject_id"]) for c in contact_changes] == [
        ("customer", customer["id"]),
        ("customer", customer["id"]),
    ], "RECTIFY: adding and removing a contact are recorded changes of the customer"

    corrected = await api.patch(
        f"/customers/{customer['id']}", headers=headers, json={"tax_id": None, "notes": "Net 14"}
    )
    assert corrected.status_code == 200, corrected.text
    assert (corrected.json()["tax_id"], corrected.json()["notes"]) == (None, "Net 14")
    assert len(corrected.json()["contacts"]) == 2


@pytest.mark.clause("NO-PAN")
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tax_id": "FR 4030\n3265045"}, "tax_id"),
        ({"tax_id": "-FR403"}, "tax_id"),
        ({"notes": "line one\rline two"}, "notes"),
        ({"notes": "card 4111 1111 1111 1111"}, "notes"),
        ({"contacts": [{"name": "No Mail"}]}, "contacts.0.email"),
        ({"contacts": [{"name": "X", "email": "x@buyer.test"}]}, "contacts.0.email"),
        ({"contacts": [{"name": " ", "email": "x@buyer.example.com"}]}, "contacts.0.name"),
        (
            {"contacts": [{"name": "X", "email": f"x{i}@buyer.example.com"} for i in range(21)]},
            "contacts",
        ),
    ],
)
async def test_hostile_customer_details_are_refused_naming_the_field_and_store_nothing(
    api: httpx.AsyncClient, account: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    """NO-PAN: a card number in the notes is refused like every other hostile value."""
    refused = await api.post("/customers", headers=account["headers"], json=ACME_BUYER | change)
    assert refused.status_code == 422, refused.text
    assert field in {e["field"] for e in refused.json()["errors"]}, refused.text
    assert (await api.get("/customers", headers=account["headers"])).json() == []


async def test_a_customer_has_at_most_twenty_contacts(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = account["headers"]
    many = [{"name": f"C{i}", "email": f"c{i}@buyer.example.com"} for i in range(20)]
    created = await api.post("/customers", headers=headers, json=ACME_BUYER | {"contacts": many})
    assert created.status_code == 201, created.text
    one_more = await api.post(
        f"/customers/{created.json()['id']}/contacts",
        headers=headers,
        json={"name": "C20", "email": "c20@buyer.example.com"},
    )
    assert one_more.status_code == 409, one_more.text


async def test_the_customers_tax_id_is_printed_on_invoices_as_issued(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    headers = account["headers"]
    customer = (await api.post("/customers", headers=headers, json=ACME_BUYER)).json()
    body = {
        "customer_id": customer["id"],
        "currency": "EUR",
        "due_date": "2030-01-31",
        "lines": [{"description": "Work", "quantity": "1", "unit_price": "100"}],
    }
    at_once = await api.post("/invoices", headers=headers, json=body | {"issue": True})
    draft = await api.post("/invoices", headers=headers, json=body)
    await api.patch(f"/customers/{customer['id']}", headers=headers, json={"tax_id": "DE123"})
    issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=headers)
    assert at_once.json()["bill_to"]["tax_id"] == "FR40303265045"
    assert issued.json()["bill_to"]["tax_id"] == "DE123", "the details as of issuing"
    kept = await api.get(f"/invoices/{at_once.json()['id']}", headers=headers)
    assert kept.json()["bill_to"]["tax_id"] == "FR40303265045", "issued invoices keep theirs"
    events = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("invoice.issued"),
        count=2,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    assert [e["data"]["customer"]["tax_id"] for e in events] == ["FR40303265045", "DE123"]


@pytest.mark.clause("LEAST-ACCESS")
async def test_another_accounts_customer_gets_no_contact(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    """LEAST-ACCESS: one account adds nothing to another's customers."""
    customer = (await api.post("/customers", headers=account["headers"], json=ACME_BUYER)).json()
    other = await api.post(
        "/accounts",
        json={
            "name": "Other",
            "owner": {"name": "Eve", "email": f"e-{uuid.uuid4().hex[:6]}@o.example.com"},
        },
    )
    eve = {"Authorization": f"Bearer {other.json()['api_key']}"}
    refused = await api.post(
        f"/customers/{customer['id']}/contacts",
        headers=eve,
        json={"name": "Mallory", "email": "m@o.example.com"},
    )
    assert refused.status_code == 404
