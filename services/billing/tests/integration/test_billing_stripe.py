"""The Stripe adapter, through the official SDK, against a local stand-in for Stripe's API.

The stand-in answers the two calls the adapter makes (Checkout Sessions and refunds) with the
documented shapes and records what it was sent; webhooks are signed with Stripe's documented
scheme (`Stripe-Signature: t=...,v1=HMAC-SHA256("t.body")`). Passing shows the adapter speaks
that API and checks those signatures; it does not show a real Stripe account was used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing.main import create_app
from billing.payments.gateway import (
    CheckoutRequest,
    GatewayEventKind,
    RefundRequest,
    WebhookRejected,
)
from billing.payments.stripe_gateway import StripeGateway
from billing.settings import BillingSettings, PaymentSettings
from devstack.processes import free_port
from devstack.testing import running, served

pytestmark = pytest.mark.integration


def _letters() -> str:
    """A random id of letters only, as the gateways' are: a hex id's digits can line up as a
    Luhn-valid run that billing's card-number scan refuses (NO-PAN), once in a few hundred."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(24))


SECRET = "whsec_test_" + "s" * 24


class StripeStandIn:
    """Records the requests; answers as Stripe's API does for these two endpoints."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []

    def app(self) -> Starlette:
        async def sessions(request: Request) -> JSONResponse:
            form = parse_qs((await request.body()).decode())
            self.requests.append(("checkout", form, dict(request.headers)))
            session_id = f"cs_test_{_letters()}"
            return JSONResponse(
                {
                    "id": session_id,
                    "object": "checkout.session",
                    "url": f"https://checkout.stripe.com/c/pay/{session_id}",
                    "payment_status": "unpaid",
                }
            )

        async def refunds(request: Request) -> JSONResponse:
            form = parse_qs((await request.body()).decode())
            self.requests.append(("refund", form, dict(request.headers)))
            return JSONResponse({"id": f"re_{_letters()}", "object": "refund", "status": "pending"})

        return Starlette(
            routes=[
                Route("/v1/checkout/sessions", sessions, methods=["POST"]),
                Route("/v1/refunds", refunds, methods=["POST"]),
            ]
        )


@pytest.fixture(scope="module")
def stand_in() -> Iterator[tuple[StripeStandIn, str]]:
    stripe_api = StripeStandIn()
    with served(stripe_api.app(), free_port()) as url:
        yield stripe_api, url


def _stripe_signed(payload: bytes, secret: str = SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _event(kind: str, found: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{_letters()}",
            "object": "event",
            "type": kind,
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "data": {"object": found},
        }
    ).encode()


def _gateway(url: str) -> StripeGateway:
    return StripeGateway(
        api_key="sk_test_standin",
        webhook_secret=SECRET,
        return_url="https://billing.example.com/payments/done",
        api_base=url,
    )


async def test_a_checkout_session_is_asked_for_in_minor_units_once_per_checkout(
    stand_in: tuple[StripeStandIn, str],
) -> None:
    stripe_api, url = stand_in
    gateway = _gateway(url)
    checkout_id = uuid.uuid4()
    try:
        opened = await gateway.create_checkout(
            CheckoutRequest(
                checkout_id=checkout_id,
                amount=Decimal("12.34"),
                currency="EUR",
                description="Invoice INV-000001",
                return_url=None,
            )
        )
        refund_id = uuid.uuid4()
        refunded = await gateway.refund(
            RefundRequest(
                refund_id=refund_id, payment_id="pi_123", amount=Decimal(5), currency="JPY"
            )
        )
    finally:
        await gateway.close()
    assert opened.url.startswith("https://checkout.stripe.com/")
    assert refunded.startswith("re_")
    (_, form, headers), (_, refund_form, refund_headers) = stripe_api.requests[-2:]
    assert form["mode"] == ["payment"]
    assert form["client_reference_id"] == [str(checkout_id)]
    assert form["line_items[0][price_data][unit_amount]"] == ["1234"]
    assert form["line_items[0][price_data][currency]"] == ["eur"]
    assert form["success_url"] == ["https://billing.example.com/payments/done"]
    assert headers["idempotency-key"] == f"checkout-{checkout_id}"
    assert headers["authorization"] == "Bearer sk_test_standin"
    assert refund_form["payment_intent"] == ["pi_123"]
    assert refund_form["amount"] == ["5"]  # yen have no minor unit
    assert refund_form["metadata[quittance_reference]"] == [str(refund_id)]
    assert refund_headers["idempotency-key"] == f"refund-{refund_id}"


def test_webhooks_are_read_only_under_a_valid_fresh_stripe_signature(
    stand_in: tuple[StripeStandIn, str],
) -> None:
    gateway = _gateway(stand_in[1])
    paid = _event(
        "checkout.session.completed",
        {
            "id": "cs_test_1",
            "object": "checkout.session",
            "payment_status": "paid",
            "payment_intent": "pi_1",
            "client_reference_id": "ref-1",
            "amount_total": 1999,
            "currency": "usd",
        },
    )
    event = gateway.verify(paid, {"stripe-signature": _stripe_signed(paid)})
    assert event.kind is GatewayEventKind.PAYMENT_SUCCEEDED
    assert (event.payment_id, event.reference, event.amount, event.currency) == (
        "pi_1",
        "ref-1",
        Decimal("19.99"),
        "USD",
    )
    refund = _event(
        "refund.updated",
        {
            "id": "re_1",
            "object": "refund",
            "status": "succeeded",
            "payment_intent": "pi_1",
            "amount": 500,
            "currency": "usd",
            "metadata": {"quittance_reference": "ref-2"},
        },
    )
    event = gateway.verify(refund, {"stripe-signature": _stripe_signed(refund)})
    assert event.kind is GatewayEventKind.REFUND_SUCCEEDED
    assert (event.refund_id, event.reference, event.amount) == ("re_1", "ref-2", Decimal(5))
    unpaid = _event(
        "checkout.session.completed",
        {"id": "cs_2", "object": "checkout.session", "payment_status": "unpaid"},
    )
    assert gateway.verify(unpaid, {"stripe-signature": _stripe_signed(unpaid)}).kind is None
    for headers in (
        {"stripe-signature": _stripe_signed(paid, secret="whsec_forged")},
        {"stripe-signature": _stripe_signed(paid, at=int(time.time()) - 3600)},
        {"stripe-signature": "garbage"},
        {},
    ):
        with pytest.raises(WebhookRejected):
            gateway.verify(paid, headers)
    with pytest.raises(WebhookRejected):  # one byte changed after signing
        gateway.verify(paid.replace(b"1999", b"9999"), {"stripe-signature": _stripe_signed(paid)})


async def test_billing_on_stripe_marks_an_invoice_paid_from_the_signed_webhook(
    stand_in: tuple[StripeStandIn, str], billing_settings: BillingSettings
) -> None:
    _, url = stand_in
    payments = PaymentSettings(
        gateway="stripe",
        stripe_api_base=url,
        api_key="sk_test_standin",
        webhook_secret=SECRET,
        return_url="https://billing.example.com/payments/done",
    )
    settings = billing_settings.model_copy(update={"payments": payments})
    async with running(create_app(settings), base_url="http://billing") as api:
        suffix = uuid.uuid4().hex[:6]
        opened = await api.post(
            "/accounts",
            json={"name": "Striped", "owner": {"name": "S", "email": f"s-{suffix}@s.example"}},
        )
        headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = await api.post(
            "/customers", headers=headers, json={"name": "C", "email": "c@s.example.com"}
        )
        issued = await api.post(
            "/invoices",
            headers=headers,
            json={
                "customer_id": customer.json()["id"],
                "currency": "USD",
                "lines": [{"description": "Work", "quantity": "1", "unit_price": "19.99"}],
                "issue": True,
            },
        )
        checkout = await api.post(
            f"/invoices/{issued.json()['id']}/checkout", headers=headers, json={}
        )
        assert checkout.status_code == 201, checkout.text
        assert checkout.json()["url"].startswith("https://checkout.stripe.com/")
        paid = _event(
            "checkout.session.completed",
            {
                "id": "cs_test_x",
                "object": "checkout.session",
                "payment_status": "paid",
                "payment_intent": f"pi_{suffix}",
                "client_reference_id": checkout.json()["id"],
                "amount_total": 1999,
                "currency": "usd",
            },
        )
        for _ in range(2):  # Stripe may deliver an event more than once
            answer = await api.post(
                "/payments/webhooks/stripe",
                content=paid,
                headers={"Stripe-Signature": _stripe_signed(paid)},
            )
            assert answer.status_code == 200, answer.text
        assert answer.json() == {"outcome": "duplicate"}  # the event id, seen by the inbox
        # The same payment under another event id (Stripe sends completed and, for delayed
        # methods, async_payment_succeeded): recorded once all the same.
        again = json.loads(paid)
        again["id"] = f"evt_{_letters()}"
        again["type"] = "checkout.session.async_payment_succeeded"
        other = json.dumps(again).encode()
        answer = await api.post(
            "/payments/webhooks/stripe",
            content=other,
            headers={"Stripe-Signature": _stripe_signed(other)},
        )
        assert answer.json() == {"outcome": "duplicate-payment"}
        invoice = await api.get(f"/invoices/{issued.json()['id']}", headers=headers)
        assert (invoice.json()["status"], invoice.json()["amount_paid"]) == ("paid", "19.99")
        forged = await api.post(
            "/payments/webhooks/stripe",
            content=paid,
            headers={"Stripe-Signature": _stripe_signed(paid, secret="whsec_forged")},
        )
        assert forged.status_code == 400
        assert len((await api.get("/payments", headers=headers)).json()) == 1
