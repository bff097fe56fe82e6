"""The payment gateway port: what billing asks of a gateway and what it hears back.

Billing never handles a card (NO-PAN): it asks the gateway for a hosted checkout page, and
learns of payments and refunds only from webhooks whose signature the adapter has verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol
from uuid import UUID


class GatewayEventKind(StrEnum):
    """The webhook events billing acts on; every other kind is acknowledged and ignored."""

    PAYMENT_SUCCEEDED = "payment_succeeded"
    REFUND_SUCCEEDED = "refund_succeeded"
    REFUND_FAILED = "refund_failed"  # a requested refund the gateway could not make


@dataclass(frozen=True)
class CheckoutRequest:
    """A hosted page for one payment of a fixed amount towards an invoice."""

    checkout_id: UUID  # billing's id: the gateway echoes it back as the reference
    amount: Decimal
    currency: str
    description: str
    return_url: str | None


@dataclass(frozen=True)
class Checkout:
    """The gateway's session and the page the payer is sent to."""

    session_id: str
    url: str


@dataclass(frozen=True)
class RefundRequest:
    """Give back part or all of a captured payment."""

    refund_id: UUID  # billing's id: the gateway's idempotency key and reference
    payment_id: str  # the gateway's payment id
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class GatewayEvent:
    """A verified webhook event, in billing's terms."""

    event_id: str
    kind: GatewayEventKind | None  # None: a kind billing does not act on
    payment_id: str | None = None
    reference: str | None = None  # billing's checkout id (payments) or refund id (refunds)
    refund_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


class WebhookRejected(Exception):
    """A webhook that is not provably from the gateway (bad, missing or stale signature), or
    whose event billing cannot read: refused with a 400, nothing changed."""


def checked_event(
    *,
    event_id: object,
    kind: GatewayEventKind | None,
    payment_id: object,
    reference: object,
    refund_id: object,
    units: object,
    currency: object,
) -> GatewayEvent:
    """A gateway event in billing's terms, its fields checked: a kind billing acts on needs a
    payment id, an ISO currency and a whole, positive number of minor units."""
    from billing.payments.domain import from_minor_units

    if not isinstance(event_id, str) or not event_id:
        raise WebhookRejected("the event has no id")
    if kind is None:
        return GatewayEvent(event_id=event_id, kind=None)
    if not isinstance(payment_id, str) or not payment_id:
        raise WebhookRejected("the event names no payment")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise WebhookRejected("the event has no ISO 4217 currency")
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise WebhookRejected("the event's amount is not a whole number of minor units above 0")
    if kind is not GatewayEventKind.PAYMENT_SUCCEEDED and (
        not isinstance(refund_id, str) or not refund_id
    ):
        raise WebhookRejected("the event names no refund")
    try:
        amount = from_minor_units(units, currency.upper())
    except ValueError as exc:
        raise WebhookRejected(f"the event's currency is not one billing knows: {exc}") from exc
    return GatewayEvent(
        event_id=event_id,
        kind=kind,
        payment_id=payment_id,
        reference=reference if isinstance(reference, str) and reference else None,
        refund_id=refund_id if isinstance(refund_id, str) and refund_id else None,
        amount=amount,
        currency=currency.upper(),
    )


class GatewayError(Exception):
    """The gateway refused a request or could not be reached."""


class PaymentGateway(Protocol):
    """What an adapter (sandbox, Stripe) provides."""

    name: str

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Open a hosted payment page; idempotent on the checkout id."""
        ...

    async def refund(self, request: RefundRequest) -> str:
        """Ask for a refund; idempotent on the refund id; returns the gateway's refund id.
        The refund counts only once its webhook arrives."""
        ...

    def verify(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """The event a webhook carries, or WebhookRejected if its signature does not hold."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
