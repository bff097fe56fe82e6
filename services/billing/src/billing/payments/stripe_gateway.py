"""The Stripe adapter: Checkout Sessions, refunds, and webhook signatures, with the official SDK."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from billing.payments.domain import to_minor_units
from billing.payments.gateway import (
    Checkout,
    CheckoutRequest,
    GatewayError,
    GatewayEvent,
    GatewayEventKind,
    RefundRequest,
    WebhookRejected,
    checked_event,
)

REFERENCE_KEY = "quittance_reference"
_PAID_SESSION = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
_REFUND = {"refund.created", "refund.updated", "refund.failed"}
_REFUND_KINDS = {
    "succeeded": GatewayEventKind.REFUND_SUCCEEDED,
    "failed": GatewayEventKind.REFUND_FAILED,
    "canceled": GatewayEventKind.REFUND_FAILED,
}


class StripeGateway:
    """Stripe Checkout in payment mode; payments and refunds from verified webhooks."""

    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        return_url: str,
        api_base: str | None = None,
        tolerance_s: int = 300,
        timeout_s: float = 10.0,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.return_url = return_url
        self.tolerance_s = tolerance_s
        self.http = stripe.HTTPXClient(timeout=timeout_s)
        self.client = stripe.StripeClient(
            api_key,
            http_client=self.http,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=2,
        )

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """A Checkout Session for one line, the invoice, with billing's checkout id as its
        client reference; idempotent on that id."""
        reference = str(request.checkout_id)
        params: Any = {
            "mode": "payment",
            "client_reference_id": reference,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": to_minor_units(request.amount, request.currency),
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "metadata": {REFERENCE_KEY: reference},
            "success_url": request.return_url or self.return_url,
        }
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                params, options={"idempotency_key": f"checkout-{reference}"}
            )
        except stripe.StripeError as exc:
            raise GatewayError(f"Stripe refused: {exc.user_message or type(exc).__name__}") from exc
        if session.url is None:
            raise GatewayError("Stripe gave no payment page")
        return Checkout(session_id=session.id, url=session.url)

    async def refund(self, request: RefundRequest) -> str:
        """A refund of the payment intent; idempotent on billing's refund id."""
        reference = str(request.refund_id)
        params: Any = {
            "payment_intent": request.payment_id,
            "amount": to_minor_units(request.amount, request.currency),
            "metadata": {REFERENCE_KEY: reference},
        }
        try:
            refund = await self.client.v1.refunds.create_async(
                params, options={"idempotency_key": f"refund-{reference}"}
            )
        except stripe.StripeError as exc:
            raise GatewayError(f"Stripe refused: {exc.user_message or type(exc).__name__}") from exc
        return str(refund.id)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """The event, once `Stripe-Signature` holds under the endpoint's secret."""
        try:
            event = stripe.Webhook.construct_event(
                body, headers.get("stripe-signature"), self.webhook_secret, self.tolerance_s
            )
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected(f"the Stripe signature does not hold: {exc}") from exc
        except Exception as exc:  # the SDK's parsing of a signed but unreadable body
            raise WebhookRejected(f"the event is malformed: {type(exc).__name__}") from exc
        try:
            return _event(event.to_dict())
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WebhookRejected(f"the event is malformed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        """Close the SDK's HTTP client."""
        await self.http.close_async()  # type: ignore[no-untyped-call]


def _event(event: dict[str, Any]) -> GatewayEvent:
    """Billing's view of a Stripe event: paid sessions, succeeded and failed refunds; the rest
    acknowledged and ignored."""
    found = event["data"]["object"]
    if not isinstance(found, dict):
        raise TypeError("data.object")
    if event["type"] in _PAID_SESSION and found.get("payment_status") == "paid":
        return checked_event(
            event_id=event.get("id"),
            kind=GatewayEventKind.PAYMENT_SUCCEEDED,
            payment_id=found.get("payment_intent"),
            reference=found.get("client_reference_id"),
            refund_id=None,
            units=found.get("amount_total"),
            currency=found.get("currency"),
        )
    if event["type"] in _REFUND and found.get("status") in _REFUND_KINDS:
        metadata = found.get("metadata") or {}
        return checked_event(
            event_id=event.get("id"),
            kind=_REFUND_KINDS[found["status"]],
            payment_id=found.get("payment_intent"),
            reference=metadata.get(REFERENCE_KEY) if isinstance(metadata, dict) else None,
            refund_id=found.get("id"),
            units=found.get("amount"),
            currency=found.get("currency"),
        )
    return checked_event(
        event_id=event.get("id"),
        kind=None,
        payment_id=None,
        reference=None,
        refund_id=None,
        units=None,
        currency=None,
    )
