"""Routes of payments: checkout pages, the gateway's webhooks, refunds, customer credit."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from billing.auth.policy import AnyUser, Bookkeeper
from billing.dependencies import MAX_OFFSET, ServicesDep
from billing.invoices.domain import to_minor_unit
from billing.invoices.models import InvoicePublic
from billing.invoices.routes import public_invoice
from billing.payments.models import (
    CheckoutCreate,
    CheckoutPublic,
    CreditApply,
    CreditBalancePublic,
    PaymentCheckout,
    PaymentPublic,
    PaymentRefund,
    RefundCreate,
    RefundPublic,
)
from billing.payments.service import PaymentWithRefunds
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, GATEWAY, NOT_FOUND
from billing.schemas import Schema

router = APIRouter(tags=["payments"], responses=ANY_ROUTE)


class WebhookReceived(Schema):
    """What became of a webhook: recorded, duplicate, ignored or unmatched."""

    outcome: str


def _checkout(checkout: PaymentCheckout) -> CheckoutPublic:
    assert checkout.url is not None
    return CheckoutPublic(
        id=checkout.id,
        invoice_id=checkout.invoice_id,
        amount=to_minor_unit(checkout.amount, checkout.currency),
        currency=checkout.currency,
        url=checkout.url,
        created_at=checkout.created_at,
    )


def _refund(refund: PaymentRefund, currency: str) -> RefundPublic:
    def money(amount: Decimal | None) -> Decimal | None:
        return None if amount is None else to_minor_unit(amount, currency)

    return RefundPublic(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=to_minor_unit(refund.amount, currency),
        status=refund.status,
        reason=refund.reason,
        from_credit=money(refund.from_credit),
        from_invoice=money(refund.from_invoice),
        created_at=refund.created_at,
        refunded_at=refund.refunded_at,
    )


def _payment(found: PaymentWithRefunds) -> PaymentPublic:
    payment, currency = found.payment, found.payment.currency
    return PaymentPublic(
        id=payment.id,
        invoice_id=payment.invoice_id,
        customer_id=payment.customer_id,
        gateway=payment.gateway,
        currency=currency,
        amount=to_minor_unit(payment.amount, currency),
        applied_amount=to_minor_unit(payment.applied_amount, currency),
        credit_amount=to_minor_unit(payment.credit_amount, currency),
        refunded_amount=to_minor_unit(payment.refunded_amount, currency),
        received_at=payment.received_at,
        refunds=[_refund(refund, currency) for refund in found.refunds],
    )


@router.post(
    "/invoices/{invoice_id}/checkout",
    status_code=201,
    response_model=CheckoutPublic,
    responses={**AUTHENTICATED, **NOT_FOUND, **CONFLICT, **GATEWAY},
)
async def open_checkout(
    invoice_id: UUID, body: CheckoutCreate, principal: Bookkeeper, services: ServicesDep
) -> CheckoutPublic:
    """A payment page at the gateway for what the invoice asks for (or part of it): send the
    payer there. Cards are typed on the gateway's page, never here (NO-PAN); the invoice is
    marked paid when the gateway's signed webhook confirms the payment."""
    checkout = await services.payments.open_checkout(
        principal=principal, invoice_id=invoice_id, request=body
    )
    return _checkout(checkout)


@router.post(
    "/invoices/{invoice_id}/apply-credit",
    response_model=InvoicePublic,
    responses={**AUTHENTICATED, **NOT_FOUND, **CONFLICT},
)
async def apply_credit(
    invoice_id: UUID, body: CreditApply, principal: Bookkeeper, services: ServicesDep
) -> InvoicePublic:
    """Pay an issued invoice from its customer's credit (an overpayment, or a paid invoice
    credited later) in the invoice's currency."""
    await services.payments.apply_credit(principal=principal, invoice_id=invoice_id, request=body)
    return public_invoice(await services.invoices.get(principal=principal, invoice_id=invoice_id))


@router.get(
    "/customers/{customer_id}/credit",
    response_model=list[CreditBalancePublic],
    responses={**AUTHENTICATED, **NOT_FOUND},
)
async def customer_credit(
    customer_id: UUID, principal: AnyUser, services: ServicesDep
) -> list[CreditBalancePublic]:
    """The customer's unused credit per currency."""
    balances = await services.payments.balances(principal=principal, customer_id=customer_id)
    return [
        CreditBalancePublic(currency=currency, balance=to_minor_unit(balance, currency))
        for currency, balance in balances.items()
    ]


@router.post(
    "/payments/webhooks/{gateway}",
    response_model=WebhookReceived,
    responses={**NOT_FOUND, **CONFLICT},
)
async def receive_webhook(gateway: str, request: Request, services: ServicesDep) -> WebhookReceived:
    """The payment gateway's webhooks: acted on only when their signature holds, and once per
    event id, however often the gateway (or anyone) sends them again."""
    body = await request.body()
    outcome = await services.payments.receive_webhook(
        gateway_name=gateway, body=body, headers=request.headers
    )
    return WebhookReceived(outcome=outcome)


@router.get("/payments/done", response_class=HTMLResponse, include_in_schema=False)
async def payment_done() -> HTMLResponse:
    """Where the gateway sends the payer's browser back: the payment is confirmed separately."""
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Thank you</title></head>"
        "<body><h1>Thank you</h1><p>Your payment is being confirmed; the invoice shows as "
        "paid once the payment gateway has told us.</p></body></html>"
    )


@router.get("/payments", response_model=list[PaymentPublic], responses={**AUTHENTICATED})
async def list_payments(
    principal: AnyUser,
    services: ServicesDep,
    invoice_id: Annotated[UUID | None, Query(description="Only this invoice's.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[PaymentPublic]:
    """The account's payments, newest first, with their refunds."""
    found = await services.payments.list(
        principal=principal, invoice_id=invoice_id, limit=limit, offset=offset
    )
    return [_payment(payment) for payment in found]


@router.get(
    "/payments/{payment_id}",
    response_model=PaymentPublic,
    responses={**AUTHENTICATED, **NOT_FOUND},
)
async def get_payment(payment_id: UUID, principal: AnyUser, services: ServicesDep) -> PaymentPublic:
    """One payment with its refunds."""
    return _payment(await services.payments.get(principal=principal, payment_id=payment_id))


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=202,
    response_model=RefundPublic,
    responses={**AUTHENTICATED, **NOT_FOUND, **CONFLICT, **GATEWAY},
)
async def refund_payment(
    payment_id: UUID, body: RefundCreate, principal: Bookkeeper, services: ServicesDep
) -> RefundPublic:
    """Give back part or all of a payment through the gateway: requested now, succeeded (and
    counted) when the gateway's signed webhook confirms it."""
    refund = await services.payments.refund(
        principal=principal, payment_id=payment_id, request=body
    )
    found = await services.payments.get(principal=principal, payment_id=payment_id)
    return _refund(refund, found.payment.currency)
