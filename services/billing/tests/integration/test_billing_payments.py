"""Payments through the sandbox gateway, a real process: a hosted page, signed webhooks, refunds.

Billing runs under uvicorn so that the gateway's webhooks reach it over HTTP, as in production.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from billing.main import create_app
from billing.settings import BillingSettings, PaymentSettings
from devstack.processes import free_port
from devstack.stack import start_payment_gateway
from devstack.testing import eventually, read_events, rows_mentioning, served

pytestmark = pytest.mark.integration


def _letters() -> str:
    """A random id of letters only, as the gateways' are: a hex id's digits can line up as a
    Luhn-valid run that billing's card-number scan refuses (NO-PAN), once in a few hundred."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(24))


CARD = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"


class Gateway:
    """The sandbox gateway process and its secrets, as the tests drive it."""

    def __init__(self, url: str, api_key: str, webhook_secret: str) -> None:
        self.url = url
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )

    async def pay(self, page_url: str, card: str = CARD) -> httpx.Response:
        """Type a card on the hosted page, as the payer does."""
        return await self.client.post(
            page_url, data={"card_number": card, "expiry": "12/34", "cvc": "123"}
        )

    async def events(self) -> list[dict[str, Any]]:
        """Every event the gateway sent, with its deliveries."""
        answer = await self.client.get("/v1/events")
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found

    async def resend(self, event_id: str) -> None:
        """Send an event again, freshly signed: a replay."""
        answer = await self.client.post(f"/v1/events/{event_id}/resend")
        assert answer.status_code == 202, answer.text


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="module")
def gateway_process(
    ports: tuple[int, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    billing_port, gateway_port = ports
    api_key, secret = f"sk_sandbox_{secrets.token_hex(8)}", f"whsec_{secrets.token_hex(16)}"
    process = start_payment_gateway(
        port=gateway_port,
        webhook_url=f"http://127.0.0.1:{billing_port}/payments/webhooks/sandbox",
        api_key=api_key,
        webhook_secret=secret,
        log_path=Path(tmp_path_factory.mktemp("gateway")) / "gateway.log",
    )
    try:
        yield f"http://127.0.0.1:{gateway_port}", api_key, secret
    finally:
        process.stop()


@pytest.fixture(scope="module")
def paying_settings(
    billing_settings: BillingSettings, gateway_process: tuple[str, str, str]
) -> BillingSettings:
    url, api_key, secret = gateway_process
    payments = PaymentSettings(
        gateway="sandbox",
        sandbox_url=url,
        api_key=api_key,
        webhook_secret=secret,
        return_url="https://billing.example.com/payments/done",
    )
    return billing_settings.model_copy(update={"payments": payments})


@pytest.fixture(scope="module")
def paying_billing(paying_settings: BillingSettings, ports: tuple[int, int]) -> Iterator[str]:
    with served(create_app(paying_settings), ports[0]) as url:
        yield url


@pytest.fixture
async def billing(paying_billing: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=paying_billing, timeout=30) as client:
        yield client


@pytest.fixture
async def gateway(gateway_process: tuple[str, str, str]) -> AsyncIterator[Gateway]:
    sandbox = Gateway(*gateway_process)
    try:
        yield sandbox
    finally:
        await sandbox.client.aclose()


@pytest.fixture
async def seller(billing: httpx.AsyncClient) -> dict[str, Any]:
    """An account with a customer."""
    suffix = uuid.uuid4().hex[:6]
    opened = await billing.post(
        "/accounts",
        json={
            "name": f"Payee {suffix}",
            "owner": {
                "name": "Pat Payee",
                "email": f"pat-{suffix}@payee.example.com",
                "password": "the payee's long passphrase",
            },
        },
    )
    assert opened.status_code == 201, opened.text
    headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
    customer = await billing.post(
        "/customers",
        headers=headers,
        json={"name": "Penny Payer", "email": f"penny-{suffix}@payer.example.com"},
    )
    assert customer.status_code == 201, customer.text
    return {
        "headers": headers,
        "account_id": opened.json()["account"]["id"],
        "customer_id": customer.json()["id"],
    }


async def _issue(billing: httpx.AsyncClient, seller: dict[str, Any], price: str) -> dict[str, Any]:
    issued = await billing.post(
        "/invoices",
        headers=seller["headers"],
        json={
            "customer_id": seller["customer_id"],
            "currency": "EUR",
            "lines": [{"description": "Consulting", "quantity": "1", "unit_price": price}],
            "issue": True,
        },
    )
    assert issued.status_code == 201, issued.text
    body: dict[str, Any] = issued.json()
    return body


async def _checkout(
    billing: httpx.AsyncClient, seller: dict[str, Any], invoice_id: str, amount: str | None = None
) -> dict[str, Any]:
    opened = await billing.post(
        f"/invoices/{invoice_id}/checkout",
        headers=seller["headers"],
        json={} if amount is None else {"amount": amount},
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    return body


async def _invoice(
    billing: httpx.AsyncClient, seller: dict[str, Any], invoice_id: str
) -> dict[str, Any]:
    found = await billing.get(f"/invoices/{invoice_id}", headers=seller["headers"])
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


async def _until_status(
    billing: httpx.AsyncClient, seller: dict[str, Any], invoice_id: str, status: str
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        invoice = await _invoice(billing, seller, invoice_id)
        return invoice if invoice["status"] == status else None

    found: dict[str, Any] = await eventually(reached, what=f"invoice {status}")
    return found


async def _payments(
    billing: httpx.AsyncClient, seller: dict[str, Any], invoice_id: str
) -> list[dict[str, Any]]:
    found = await billing.get(
        "/payments", headers=seller["headers"], params={"invoice_id": invoice_id}
    )
    assert found.status_code == 200, found.text
    payments: list[dict[str, Any]] = found.json()
    return payments


@pytest.mark.clause("NO-PAN")
async def test_an_invoice_paid_on_the_gateway_page_is_marked_paid_by_its_signed_webhook(
    billing: httpx.AsyncClient,
    gateway: Gateway,
    seller: dict[str, Any],
    paying_settings: BillingSettings,
) -> None:
    """NO-PAN: the card is typed on the gateway's page; billing learns of the payment from the
    signed webhook, and the card number reaches none of its tables or topics."""
    invoice = await _issue(billing, seller, "120.00")
    checkout = await _checkout(billing, seller, invoice["id"])
    assert checkout["amount"] == "120.00"
    assert checkout["url"].startswith(gateway.url)
    page = await gateway.client.get(checkout["url"])
    assert page.status_code == 200
    assert "card_number" in page.text
    assert invoice["number"] in page.text

    paid = await gateway.pay(checkout["url"])
    assert paid.status_code == 303
    assert paid.headers["location"] == "https://billing.example.com/payments/done"

    invoice = await _until_status(billing, seller, invoice["id"], "paid")
    assert invoice["amount_paid"] == "120.00"
    assert invoice["amount_due"] == "0.00"
    (payment,) = await _payments(billing, seller, invoice["id"])
    assert payment["amount"] == "120.00"
    assert payment["applied_amount"] == "120.00"
    assert payment["credit_amount"] == "0.00"

    prefix = paying_settings.kafka.topic_prefix
    bootstrap = paying_settings.kafka.bootstrap_servers
    received = await read_events(
        bootstrap, f"{prefix}payment.received", count=1, key=seller["account_id"]
    )
    assert received[0]["data"]["invoice_id"] == invoice["id"]
    assert received[0]["data"]["amount"] == "120.00"
    changed = await read_events(
        bootstrap, f"{prefix}invoice.payment_status_changed", count=1, key=seller["account_id"]
    )
    assert changed[0]["data"]["status"] == "paid"
    assert changed[0]["data"]["previous_status"] == "issued"

    digits = CARD.replace(" ", "")
    assert await rows_mentioning(paying_settings.database_url, digits) == {}
    for topic in ("payment.received", "invoice.payment_status_changed"):
        records = await read_events(bootstrap, f"{prefix}{topic}", count=1_000_000, timeout=2)
        assert all(digits not in json.dumps(r) for r in records)


async def test_a_webhook_replayed_twice_records_one_payment(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "50.00")
    checkout = await _checkout(billing, seller, invoice["id"])
    await gateway.pay(checkout["url"])
    await _until_status(billing, seller, invoice["id"], "paid")
    (event,) = [
        e
        for e in await gateway.events()
        if e["event"]["data"].get("checkout_session") in checkout["url"]
        and e["event"]["type"] == "payment.succeeded"
    ]
    await gateway.resend(event["event"]["id"])
    await gateway.resend(event["event"]["id"])

    async def three_deliveries() -> bool:
        (again,) = [e for e in await gateway.events() if e["event"]["id"] == event["event"]["id"]]
        return [a["status"] for a in again["attempts"]] == [200, 200, 200]

    await eventually(three_deliveries, what="the webhook delivered three times")
    assert len(await _payments(billing, seller, invoice["id"])) == 1
    assert (await _invoice(billing, seller, invoice["id"]))["amount_paid"] == "50.00"
    # The inbox knew the event id: acted on once, then acknowledged as a duplicate.
    body = json.dumps(event["event"], separators=(",", ":")).encode()
    again = await billing.post(
        "/payments/webhooks/sandbox",
        content=body,
        headers={"Sandbox-Signature": _signed(gateway.webhook_secret, body, int(time.time()))},
    )
    assert again.json() == {"outcome": "duplicate"}


def _signed(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


async def test_a_forged_stale_or_unsigned_webhook_is_refused_and_changes_nothing(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "75.00")
    checkout = await _checkout(billing, seller, invoice["id"])
    body = json.dumps(
        {
            "id": f"evt_forged_{_letters()}",
            "type": "payment.succeeded",
            "created": int(time.time()),
            "data": {
                "payment": f"pay_forged_{_letters()}",
                "reference": checkout["id"],
                "amount": 7500,
                "currency": "EUR",
            },
        }
    ).encode()
    now = int(time.time())
    attempts = {
        "forged": _signed("whsec_guessed", body, now),
        "stale": _signed(gateway.webhook_secret, body, now - 3600),
        "malformed": "v1=deadbeef",
        "missing": None,
    }
    for name, signature in attempts.items():
        headers = {"content-type": "application/json"}
        if signature is not None:
            headers["Sandbox-Signature"] = signature
        answer = await billing.post("/payments/webhooks/sandbox", content=body, headers=headers)
        assert answer.status_code == 400, (name, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"].endswith("invalid-signature"), name
    unknown = await billing.post(
        "/payments/webhooks/stripe",
        content=body,
        headers={"Sandbox-Signature": _signed(gateway.webhook_secret, body, now)},
    )
    assert unknown.status_code == 404
    assert await _payments(billing, seller, invoice["id"]) == []
    assert (await _invoice(billing, seller, invoice["id"]))["status"] == "issued"
    # The same body, truly signed, is taken: the refusals were the signatures', nothing else.
    genuine = await billing.post(
        "/payments/webhooks/sandbox",
        content=body,
        headers={"Sandbox-Signature": _signed(gateway.webhook_secret, body, now)},
    )
    assert genuine.json() == {"outcome": "recorded"}
    assert (await _invoice(billing, seller, invoice["id"]))["status"] == "paid"


async def test_a_part_payment_then_the_rest_and_what_a_checkout_refuses(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "100.00")
    first = await _checkout(billing, seller, invoice["id"], "40.00")
    await gateway.pay(first["url"])
    invoice = await _until_status(billing, seller, invoice["id"], "partially_paid")
    assert (invoice["amount_paid"], invoice["amount_due"]) == ("40.00", "60.00")
    for amount, field_message in (("60.01", "still due"), ("10.005", "minor unit")):
        refused = await billing.post(
            f"/invoices/{invoice['id']}/checkout",
            headers=seller["headers"],
            json={"amount": amount},
        )
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["errors"]
        assert error["field"] == "amount"
        assert field_message in error["message"]
    rest = await _checkout(billing, seller, invoice["id"])
    assert rest["amount"] == "60.00"
    declined = await gateway.pay(rest["url"], DECLINED)
    assert declined.status_code == 402
    await gateway.pay(rest["url"])
    invoice = await _until_status(billing, seller, invoice["id"], "paid")
    assert invoice["amount_due"] == "0.00"
    settled = await billing.post(
        f"/invoices/{invoice['id']}/checkout", headers=seller["headers"], json={}
    )
    assert settled.status_code == 409
    draft = await billing.post(
        "/invoices",
        headers=seller["headers"],
        json={
            "customer_id": seller["customer_id"],
            "lines": [{"description": "Later", "quantity": "1", "unit_price": "5"}],
        },
    )
    not_issued = await billing.post(
        f"/invoices/{draft.json()['id']}/checkout", headers=seller["headers"], json={}
    )
    assert not_issued.status_code == 409


async def _credit(billing: httpx.AsyncClient, seller: dict[str, Any]) -> dict[str, str]:
    found = await billing.get(
        f"/customers/{seller['customer_id']}/credit", headers=seller["headers"]
    )
    assert found.status_code == 200, found.text
    return {row["currency"]: row["balance"] for row in found.json()}


async def test_an_overpayment_is_kept_as_credit_and_pays_the_next_invoice(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "30.00")
    # The payer pays two links for the same invoice: the second payment is theirs, as credit.
    links = [await _checkout(billing, seller, invoice["id"]) for _ in range(2)]
    for link in links:
        await gateway.pay(link["url"])

    async def both() -> bool:
        return len(await _payments(billing, seller, invoice["id"])) == 2

    await eventually(both, what="both payments recorded")
    invoice = await _invoice(billing, seller, invoice["id"])
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", "30.00")
    payments = await _payments(billing, seller, invoice["id"])
    assert sorted(p["credit_amount"] for p in payments) == ["0.00", "30.00"]
    assert await _credit(billing, seller) == {"EUR": "30.00"}

    following = await _issue(billing, seller, "20.00")
    applied = await billing.post(
        f"/invoices/{following['id']}/apply-credit", headers=seller["headers"], json={}
    )
    assert applied.status_code == 200, applied.text
    assert (applied.json()["status"], applied.json()["amount_paid"]) == ("paid", "20.00")
    assert await _credit(billing, seller) == {"EUR": "10.00"}
    nothing_due = await billing.post(
        f"/invoices/{following['id']}/apply-credit", headers=seller["headers"], json={}
    )
    assert nothing_due.status_code == 409


async def test_a_refund_counts_once_confirmed_and_the_invoice_is_owed_again(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "80.00")
    await gateway.pay((await _checkout(billing, seller, invoice["id"]))["url"])
    await _until_status(billing, seller, invoice["id"], "paid")
    (payment,) = await _payments(billing, seller, invoice["id"])
    too_much = await billing.post(
        f"/payments/{payment['id']}/refunds", headers=seller["headers"], json={"amount": "80.01"}
    )
    assert too_much.status_code == 422
    assert too_much.json()["errors"][0]["field"] == "amount"
    refund = await billing.post(
        f"/payments/{payment['id']}/refunds",
        headers=seller["headers"],
        json={"amount": "30.00", "reason": "one day not worked"},
    )
    assert refund.status_code == 202, refund.text
    assert refund.json()["amount"] == "30.00"
    invoice = await _until_status(billing, seller, invoice["id"], "partially_paid")
    assert (invoice["amount_paid"], invoice["amount_due"]) == ("50.00", "30.00")
    (payment,) = await _payments(billing, seller, invoice["id"])
    assert payment["refunded_amount"] == "30.00"
    (confirmed,) = payment["refunds"]
    assert confirmed["status"] == "succeeded"
    assert (confirmed["from_credit"], confirmed["from_invoice"]) == ("0.00", "30.00")
    # What is left of the payment is refundable, no more.
    rest = await billing.post(
        f"/payments/{payment['id']}/refunds", headers=seller["headers"], json={}
    )
    assert rest.json()["amount"] == "50.00"
    await _until_status(billing, seller, invoice["id"], "issued")
    nothing_left = await billing.post(
        f"/payments/{payment['id']}/refunds", headers=seller["headers"], json={}
    )
    assert nothing_left.status_code == 409


async def test_a_refund_of_an_overpayment_gives_back_the_credit_first(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "10.00")
    for link in [await _checkout(billing, seller, invoice["id"]) for _ in range(2)]:
        await gateway.pay(link["url"])

    async def overpaid() -> list[dict[str, Any]] | None:
        payments = await _payments(billing, seller, invoice["id"])
        return [p for p in payments if p["credit_amount"] == "10.00"] or None

    (extra,) = await eventually(overpaid, what="the overpayment recorded")
    refund = await billing.post(
        f"/payments/{extra['id']}/refunds", headers=seller["headers"], json={}
    )
    assert refund.status_code == 202, refund.text

    async def refunded() -> bool:
        return await _credit(billing, seller) == {"EUR": "0.00"}

    await eventually(refunded, what="the credit given back")
    assert (await _invoice(billing, seller, invoice["id"]))["status"] == "paid"


async def test_a_paid_invoice_is_credited_not_voided_and_the_credit_is_the_customers(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "40.00")
    await gateway.pay((await _checkout(billing, seller, invoice["id"], "10.00"))["url"])
    await _until_status(billing, seller, invoice["id"], "partially_paid")
    void = await billing.post(
        f"/invoices/{invoice['id']}/void", headers=seller["headers"], json={"reason": "typo"}
    )
    assert void.status_code == 409
    assert "payments" in void.json()["detail"]
    credited = await billing.post(
        "/credit-notes",
        headers=seller["headers"],
        json={"invoice_id": invoice["id"], "reason": "cancelled"},
    )
    assert credited.status_code == 201, credited.text
    invoice = await _invoice(billing, seller, invoice["id"])
    assert (invoice["credited_total"], invoice["amount_paid"], invoice["amount_due"]) == (
        "40.00",
        "0.00",
        "0.00",
    )
    assert await _credit(billing, seller) == {"EUR": "10.00"}


async def test_a_statement_lists_payments_and_refunds_and_ages_only_what_is_owed(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "90.00")
    await gateway.pay((await _checkout(billing, seller, invoice["id"], "60.00"))["url"])
    await _until_status(billing, seller, invoice["id"], "partially_paid")
    (payment,) = await _payments(billing, seller, invoice["id"])
    await billing.post(
        f"/payments/{payment['id']}/refunds", headers=seller["headers"], json={"amount": "5.00"}
    )

    async def refunded() -> bool:
        (found,) = await _payments(billing, seller, invoice["id"])
        return bool(found["refunded_amount"] == "5.00")

    await eventually(refunded, what="the refund confirmed")
    statement = await billing.get(f"/statements/{seller['customer_id']}", headers=seller["headers"])
    assert statement.status_code == 200, statement.text
    body = statement.json()
    kinds = [(e["kind"], e["debit"], e["credit"]) for e in body["entries"]]
    assert kinds == [
        ("invoice", "90.00", "0.00"),
        ("payment", "0.00", "60.00"),
        ("refund", "5.00", "0.00"),
    ]
    assert body["closing_balance"] == "35.00"
    assert sum(Decimal(v) for v in body["aging"].values()) == Decimal("35.00")


async def test_payments_are_refused_plainly_when_no_gateway_is_configured(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any]
) -> None:
    issued = await api.post(
        "/invoices",
        headers=account["headers"],
        json={
            "customer_id": customer["id"],
            "lines": [{"description": "Work", "quantity": "1", "unit_price": "10"}],
            "issue": True,
        },
    )
    refused = await api.post(
        f"/invoices/{issued.json()['id']}/checkout", headers=account["headers"], json={}
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("payments-off")
    webhook = await api.post("/payments/webhooks/sandbox", content=b"{}")
    assert webhook.status_code == 404


async def test_the_gateway_down_answers_502_and_opens_no_page(
    billing_settings: BillingSettings,
) -> None:
    payments = PaymentSettings(
        gateway="sandbox",
        sandbox_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        api_key="sk_sandbox_x",
        webhook_secret="whsec_x",
        timeout_s=2,
    )
    settings = billing_settings.model_copy(update={"payments": payments})
    from devstack.testing import running

    async with running(create_app(settings), base_url="http://billing") as api:
        suffix = uuid.uuid4().hex[:6]
        opened = await api.post(
            "/accounts",
            json={"name": "Down Ltd", "owner": {"name": "D", "email": f"d-{suffix}@x.example"}},
        )
        headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = await api.post(
            "/customers", headers=headers, json={"name": "C", "email": "c@x.example.com"}
        )
        issued = await api.post(
            "/invoices",
            headers=headers,
            json={
                "customer_id": customer.json()["id"],
                "lines": [{"description": "Work", "quantity": "1", "unit_price": "10"}],
                "issue": True,
            },
        )
        answer = await api.post(
            f"/invoices/{issued.json()['id']}/checkout", headers=headers, json={}
        )
        assert answer.status_code == 502, answer.text
        assert answer.json()["type"].endswith("gateway-unavailable")
        invoice = await api.get(f"/invoices/{issued.json()['id']}", headers=headers)
        assert (invoice.json()["status"], invoice.json()["amount_paid"]) == ("issued", "0.00")
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        urls = await connection.fetch(
            "SELECT url FROM payment_checkout WHERE invoice_id = $1", uuid.UUID(issued.json()["id"])
        )
    finally:
        await connection.close()
    assert [row["url"] for row in urls] == [None]  # no page was opened, none is shown


@pytest.mark.clause("LEAST-ACCESS")
async def test_payments_of_one_account_are_invisible_to_another(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    """LEAST-ACCESS: another account cannot read, refund or pay from this one's payments."""
    invoice = await _issue(billing, seller, "15.00")
    await gateway.pay((await _checkout(billing, seller, invoice["id"]))["url"])
    await _until_status(billing, seller, invoice["id"], "paid")
    (payment,) = await _payments(billing, seller, invoice["id"])
    other = await billing.post(
        "/accounts",
        json={"name": "Other", "owner": {"name": "O", "email": f"o-{uuid.uuid4().hex[:6]}@o.ex"}},
    )
    headers = {"Authorization": f"Bearer {other.json()['api_key']}"}
    assert (await billing.get(f"/payments/{payment['id']}", headers=headers)).status_code == 404
    refund = await billing.post(f"/payments/{payment['id']}/refunds", headers=headers, json={})
    assert refund.status_code == 404
    assert (await billing.get("/payments", headers=headers)).json() == []
    checkout = await billing.post(f"/invoices/{invoice['id']}/checkout", headers=headers, json={})
    assert checkout.status_code == 404
    credit = await billing.get(f"/customers/{seller['customer_id']}/credit", headers=headers)
    assert credit.status_code == 404


async def _post_signed(
    billing: httpx.AsyncClient, gateway: Gateway, event: dict[str, Any]
) -> httpx.Response:
    body = json.dumps(event).encode()
    return await billing.post(
        "/payments/webhooks/sandbox",
        content=body,
        headers={"Sandbox-Signature": _signed(gateway.webhook_secret, body, int(time.time()))},
    )


async def test_a_signed_but_unreadable_event_is_refused_with_a_problem_not_an_error(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    invoice = await _issue(billing, seller, "20.00")
    checkout = await _checkout(billing, seller, invoice["id"])
    good = {"payment": f"pay_{_letters()}", "reference": checkout["id"], "currency": "EUR"}
    for data in (
        "not an object",
        {**good, "amount": -2000},
        {**good, "amount": 0},
        {**good, "amount": 20.5},
        {**good, "amount": True},
        {**good, "amount": "2000"},
        {**good, "amount": 2000, "currency": "E"},
        {**good, "amount": 2000, "payment": None},
    ):
        event = {"id": f"evt_{_letters()}", "type": "payment.succeeded", "data": data}
        refused = await _post_signed(billing, gateway, event)
        assert refused.status_code == 400, (data, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert await _payments(billing, seller, invoice["id"]) == []


async def test_a_refund_arriving_before_its_payment_is_refused_until_the_payment_is_in(
    billing: httpx.AsyncClient, gateway: Gateway, seller: dict[str, Any]
) -> None:
    """Gateways do not promise order: the early refund is not acknowledged, so it comes again."""
    invoice = await _issue(billing, seller, "30.00")
    checkout = await _checkout(billing, seller, invoice["id"])
    payment_id = f"pay_{_letters()}"
    refund = {
        "id": f"evt_{_letters()}",
        "type": "refund.succeeded",
        "data": {"refund": "re_early", "payment": payment_id, "amount": 1000, "currency": "EUR"},
    }
    early = await _post_signed(billing, gateway, refund)
    assert early.status_code == 409, early.text
    paid = {
        "id": f"evt_{_letters()}",
        "type": "payment.succeeded",
        "data": {
            "payment": payment_id,
            "reference": checkout["id"],
            "amount": 3000,
            "currency": "EUR",
        },
    }
    assert (await _post_signed(billing, gateway, paid)).json() == {"outcome": "recorded"}
    again = await _post_signed(billing, gateway, refund)
    assert again.json() == {"outcome": "recorded"}
    invoice = await _invoice(billing, seller, invoice["id"])
    assert (invoice["status"], invoice["amount_paid"]) == ("partially_paid", "20.00")
