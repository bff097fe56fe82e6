"""Invoices, credit notes and statements as PDF downloads: what they print, and only to their
own account. User text prints as typed: markup and links stay text (LINKS)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

pytestmark = pytest.mark.integration

HOSTILE = "Audit <a href='javascript:alert(1)'>click</a> https://evil.example/x"


def _text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(response.content))
    return " ".join((page.extract_text() or "") for page in reader.pages).replace("\n", " ")


async def _customer(api: httpx.AsyncClient, account: dict[str, Any]) -> str:
    created = await api.post(
        "/customers",
        headers=account["headers"],
        json={"name": "Zoë Ωmega", "email": "zoe@omega.example", "address": "Straße 1, Köln"},
    )
    assert created.status_code == 201, created.text
    customer_id: str = created.json()["id"]
    return customer_id


async def test_an_invoice_and_its_credit_note_print_what_was_issued(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    customer_id = await _customer(api, account)
    issued = await api.post(
        "/invoices",
        headers=account["headers"],
        json={
            "customer_id": customer_id,
            "currency": "EUR",
            "lines": [
                {"description": HOSTILE, "quantity": "2", "unit_price": "50", "tax_rate": "20"},
                {"description": "Travel", "quantity": "1", "unit_price": "30"},
            ],
            "issue": True,
        },
    )
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    text = _text(await api.get(f"/invoices/{invoice['id']}/pdf", headers=account["headers"]))
    for printed in (f"Invoice {invoice['number']}", "Zoë Ωmega", "Straße 1, Köln", "150.00"):
        assert printed in text, printed
    assert "javascript:alert(1)" in text.replace(" ", "")  # printed as typed, not a link
    assert "Tax 20% on 100.00" in text

    credited = await api.post(
        "/credit-notes",
        headers=account["headers"],
        json={"invoice_id": invoice["id"], "reason": "Travel was not billable"},
    )
    assert credited.status_code == 201, credited.text
    note = credited.json()
    text = _text(await api.get(f"/credit-notes/{note['id']}/pdf", headers=account["headers"]))
    for printed in (f"Credit note {note['number']}", invoice["number"], "Travel was not billable"):
        assert printed in text, printed


async def test_a_draft_prints_as_a_draft_and_a_statement_prints_its_balances(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    customer_id = await _customer(api, account)
    draft = await api.post(
        "/invoices",
        headers=account["headers"],
        json={
            "customer_id": customer_id,
            "lines": [{"description": "Later", "quantity": "1", "unit_price": "10"}],
        },
    )
    text = _text(await api.get(f"/invoices/{draft.json()['id']}/pdf", headers=account["headers"]))
    assert "Draft invoice (not issued)" in text
    await api.post(f"/invoices/{draft.json()['id']}/issue", headers=account["headers"])
    statement = await api.get(
        f"/statements/{customer_id}", headers=account["headers"], params={"format": "pdf"}
    )
    assert "attachment" in statement.headers["content-disposition"]
    text = _text(statement)
    assert "Statement: Zoë Ωmega" in text
    assert "Closing balance" in text
    assert "10.00" in text


async def test_another_accounts_documents_do_not_print(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    customer_id = await _customer(api, account)
    issued = await api.post(
        "/invoices",
        headers=account["headers"],
        json={
            "customer_id": customer_id,
            "lines": [{"description": "Work", "quantity": "1", "unit_price": "10"}],
            "issue": True,
        },
    )
    other = await api.post(
        "/accounts",
        json={"name": "Other", "owner": {"name": "O", "email": f"o-{uuid.uuid4().hex[:6]}@o.ex"}},
    )
    headers = {"Authorization": f"Bearer {other.json()['api_key']}"}
    assert (
        await api.get(f"/invoices/{issued.json()['id']}/pdf", headers=headers)
    ).status_code == 404
    statement = await api.get(
        f"/statements/{customer_id}", headers=headers, params={"format": "pdf"}
    )
    assert statement.status_code == 404
