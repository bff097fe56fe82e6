"""Payments: open checkout pages, record payments and refunds from verified webhooks only, and
keep overpayments as the customer's credit.

Every movement of money locks the invoice, then the customer (whose credit it may move), in
that order, so concurrent webhooks, refunds and credit notes serialise without deadlocks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlalchemy import func, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.mail import mail_presentation
from billing.accounts.models import Account
from billing.auth.models import Principal
from billing.customers.models import Customer
from billing.errors import (
    BadSignatureError,
    ConflictError,
    GatewayUnavailableError,
    InvalidReferenceError,
    NotFoundError,
    PaymentsOffError,
)
from billing.invoices.domain import (
    ISSUED_STATUSES,
    InvoiceStatus,
    amount_due,
    payment_status,
    to_minor_unit,
)
from billing.invoices.models import Invoice
from billing.invoices.service import issued_customer
from billing.payments.domain import split_payment, split_refund, to_minor_units
from billing.payments.gateway import (
    CheckoutRequest,
    GatewayError,
    GatewayEvent,
    GatewayEventKind,
    PaymentGateway,
    RefundRequest,
    WebhookRejected,
)
from billing.payments.models import (
    CheckoutCreate,
    CreditApply,
    CreditKind,
    CustomerCredit,
    Payment,
    PaymentCheckout,
    PaymentRefund,
    RefundCreate,
    RefundStatus,
)
from shared.contracts import InvoicePaymentStatusChanged, PaymentReceived, PaymentRefunded
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork, Work

logger = logging.getLogger(__name__)

_CLAIM_WEBHOOK = text(
    "INSERT INTO gateway_webhook (gateway, event_id, outcome) VALUES (:gateway, :event_id, "
    "'received') ON CONFLICT DO NOTHING RETURNING 1"
)
_WEBHOOK_OUTCOME = text(
    "UPDATE gateway_webhook SET outcome = :outcome, account_id = :account_id "
    "WHERE gateway = :gateway AND event_id = :event_id"
)


@dataclass(frozen=True)
class PaymentWithRefunds:
    """A payment and its refunds, oldest first."""

    payment: Payment
    refunds: Sequence[PaymentRefund]


def _amount_within(
    requested: Decimal | None, limit: Decimal, currency: str, *, what: str
) -> Decimal:
    """The amount asked for (all of the limit if none), refused if it is more than the limit
    or finer than the currency's minor unit (EUR 1.005)."""
    amount = limit if requested is None else requested
    if amount > limit:
        raise InvalidReferenceError(
            f"more than the {to_minor_unit(limit, currency)} {what}", field="amount"
        )
    try:
        to_minor_units(amount, currency)
    except ValueError as exc:
        raise InvalidReferenceError(str(exc), field="amount") from exc
    return amount


async def _locked_invoice(session: AsyncSession, account_id: UUID, invoice_id: UUID) -> Invoice:
    found = await session.exec(
        select(Invoice)
        .where(Invoice.account_id == account_id, Invoice.id == invoice_id)
        .with_for_update()
    )
    invoice = found.first()
    if invoice is None:
        raise NotFoundError("no such invoice in this account")
    return invoice


async def lock_customer(session: AsyncSession, account_id: UUID, customer_id: UUID) -> None:
    """Serialise the customer's credit movements (after the invoice's lock, always)."""
    await session.exec(
        select(Customer.id)
        .where(Customer.account_id == account_id, Customer.id == customer_id)
        .with_for_update()
    )


async def credit_balance(
    session: AsyncSession, account_id: UUID, customer_id: UUID, currency: str
) -> Decimal:
    """A customer's unused credit in a currency."""
    found = await session.exec(
        select(func.coalesce(func.sum(CustomerCredit.amount), 0)).where(
            CustomerCredit.account_id == account_id,
            CustomerCredit.customer_id == customer_id,
            CustomerCredit.currency == currency,
        )
    )
    return Decimal(found.one())


def announce_status(work: Work, invoice: Invoice, previous: InvoiceStatus) -> None:
    """Set an issued invoice's status from what is paid and credited; say so if it changed.
    One credited in full asks for nothing more: it keeps the status it had."""
    if invoice.total - invoice.credited_total > 0:
        invoice.status = payment_status(invoice.total, invoice.credited_total, invoice.amount_paid)
    if invoice.status is previous:
        return
    assert invoice.number is not None
    work.emit(
        InvoicePaymentStatusChanged(
            account_id=invoice.account_id,
            invoice_id=invoice.id,
            number=invoice.number,
            status=invoice.status.value,
            previous_status=previous.value,
            amount_paid=invoice.amount_paid,
            amount_due=amount_due(invoice.total, invoice.credited_total, invoice.amount_paid),
        )
    )


async def credit_invoice(work: Work, invoice: Invoice, credited: Decimal, note_id: UUID) -> None:
    """Count a credit note against its invoice: whatever is then paid beyond what the invoice
    asks for becomes the customer's credit (money they have in hand with us, never lost). The
    caller locked the customer first when the invoice has payments (lock_customer)."""
    excess = invoice.amount_paid - (invoice.total - invoice.credited_total - credited)
    previous = invoice.status
    # Credited and paid change in one write: together never more than the total.
    invoice.credited_total += credited
    if excess > 0:
        invoice.amount_paid -= excess
        work.session.add(
            CustomerCredit(
                account_id=invoice.account_id,
                customer_id=invoice.customer_id,
                currency=invoice.currency,
                amount=excess,
                kind=CreditKind.CREDIT_NOTE,
                invoice_id=invoice.id,
                credit_note_id=note_id,
            )
        )
    if invoice.status in ISSUED_STATUSES:
        announce_status(work, invoice, previous)


class PaymentService:
    """An account's payments through the configured gateway."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        units: UnitsOfWork,
        gateway: PaymentGateway | None,
        return_url: str | None,
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.gateway = gateway
        self.return_url = return_url

    def _gateway(self) -> PaymentGateway:
        if self.gateway is None:
            raise PaymentsOffError("no payment gateway is configured on this server")
        return self.gateway

    # checkout pages

    async def open_checkout(
        self, *, principal: Principal, invoice_id: UUID, request: CheckoutCreate
    ) -> PaymentCheckout:
        """A hosted payment page for what an issued invoice asks for, or part of it.

        The checkout is written before the gateway is asked, so that its webhook always finds
        it; the gateway call is idempotent on the checkout's id.
        """
        account_id = principal.require_user()
        async with self.units() as work:
            invoice = await _locked_invoice(work.session, account_id, invoice_id)
            gateway = self._gateway()
            if invoice.status not in ISSUED_STATUSES:
                raise ConflictError(f"invoice is {invoice.status}: nothing to pay", field="status")
            due = amount_due(invoice.total, invoice.credited_total, invoice.amount_paid)
            if due <= 0:
                raise ConflictError("invoice is settled: nothing to pay", field="status")
            amount = _amount_within(request.amount, due, invoice.currency, what="still due")
            checkout = PaymentCheckout(
                account_id=account_id,
                invoice_id=invoice.id,
                gateway=gateway.name,
                amount=amount,
                currency=invoice.currency,
            )
            number = invoice.number
            work.session.add(checkout)
        try:
            opened = await gateway.create_checkout(
                CheckoutRequest(
                    checkout_id=checkout.id,
                    amount=amount,
                    currency=checkout.currency,
                    description=f"Invoice {number}",
                    return_url=self.return_url,
                )
            )
        except GatewayError as exc:
            raise GatewayUnavailableError(str(exc)) from exc
        async with self.units() as work:
            await work.session.exec(
                update(PaymentCheckout)
                .where(col(PaymentCheckout.id) == checkout.id)
                .values(gateway_session_id=opened.session_id, url=opened.url)
            )
        checkout.gateway_session_id, checkout.url = opened.session_id, opened.url
        return checkout

    # webhooks

    async def receive_webhook(
        self, *, gateway_name: str, body: bytes, headers: Mapping[str, str]
    ) -> str:
        """Act once on a webhook whose signature holds; returns what became of it."""
        gateway = self.gateway
        if gateway is None or gateway_name != gateway.name:
            raise NotFoundError("no such payment gateway on this server")
        try:
            event = gateway.verify(body, headers)
        except WebhookRejected as exc:
            raise BadSignatureError(str(exc)) from exc
        async with self.units() as work:
            connection = await work.session.connection()
            claimed = await connection.execute(
                _CLAIM_WEBHOOK, {"gateway": gateway.name, "event_id": event.event_id}
            )
            if claimed.scalar_one_or_none() is None:
                return "duplicate"  # a redelivery or a replay: acted on already
            account_id: UUID | None = None
            if event.kind is GatewayEventKind.PAYMENT_SUCCEEDED:
                outcome, account_id = await self._record_payment(work, gateway.name, event)
            elif event.kind is GatewayEventKind.REFUND_SUCCEEDED:
                outcome, account_id = await self._record_refund(work, gateway.name, event)
            elif event.kind is GatewayEventKind.REFUND_FAILED:
                outcome, account_id = await self._refund_failed(work, gateway.name, event)
            else:
                outcome = "ignored"
            await connection.execute(
                _WEBHOOK_OUTCOME,
                {
                    "outcome": outcome,
                    "account_id": account_id,
                    "gateway": gateway.name,
                    "event_id": event.event_id,
                },
            )
        if outcome == "unmatched":
            logger.warning("a %s webhook matched no checkout or payment", gateway.name)
        return outcome

    async def _record_payment(
        self, work: Work, gateway: str, event: GatewayEvent
    ) -> tuple[str, UUID | None]:
        """Record the payment against its checkout's invoice; an overpayment becomes credit."""
        assert event.amount is not None
        assert event.payment_id is not None
        session = work.session
        checkout = await _checkout(session, gateway, event.reference)
        if checkout is None or checkout.currency != event.currency:
            return "unmatched", None
        invoice = await _locked_invoice(session, checkout.account_id, checkout.invoice_id)
        # The customer too, before any insert: a row naming the customer takes a share lock
        # on it, which two transactions could then not both raise (a deadlock).
        await lock_customer(session, invoice.account_id, invoice.customer_id)
        already = await session.exec(
            select(Payment.id).where(
                Payment.gateway == gateway, Payment.gateway_payment_id == event.payment_id
            )
        )
        if already.first() is not None:  # the same payment under another event id
            return "duplicate-payment", checkout.account_id
        previous = invoice.status
        owed = invoice.status in ISSUED_STATUSES
        due = amount_due(invoice.total, invoice.credited_total, invoice.amount_paid) if owed else 0
        split = split_payment(event.amount, Decimal(due))
        now = datetime.now(UTC)
        payment = Payment(
            account_id=invoice.account_id,
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            checkout_id=checkout.id,
            gateway=gateway,
            gateway_payment_id=event.payment_id,
            currency=invoice.currency,
            amount=event.amount,
            applied_amount=split.applied,
            credit_amount=split.credit,
            received_at=now,
        )
        session.add(payment)
        invoice.amount_paid += split.applied
        if owed:
            announce_status(work, invoice, previous)
        session.add(invoice)
        await session.flush()  # the payment before the credit that names it
        if split.credit:
            session.add(
                CustomerCredit(
                    account_id=invoice.account_id,
                    customer_id=invoice.customer_id,
                    currency=invoice.currency,
                    amount=split.credit,
                    kind=CreditKind.OVERPAYMENT,
                    payment_id=payment.id,
                    invoice_id=invoice.id,
                )
            )
        assert invoice.number is not None
        account = await session.get(Account, invoice.account_id)
        assert account is not None
        work.emit(
            PaymentReceived(
                account_id=invoice.account_id,
                payment_id=payment.id,
                invoice_id=invoice.id,
                invoice_number=invoice.number,
                customer=issued_customer(invoice),
                currency=invoice.currency,
                amount=payment.amount,
                applied_amount=split.applied,
                credit_amount=split.credit,
                amount_due=amount_due(invoice.total, invoice.credited_total, invoice.amount_paid)
                if owed
                else Decimal(0),
                received_at=now,
                seller_name=invoice.seller_name,
                presentation=mail_presentation(account),
            )
        )
        return "recorded", invoice.account_id

    async def _record_refund(
        self, work: Work, gateway: str, event: GatewayEvent
    ) -> tuple[str, UUID | None]:
        """Take a confirmed refund from the payment's unused overpayment first, then from the
        invoice, which is owed again; a refund made at the gateway's own dashboard counts too."""
        assert event.amount is not None
        session = work.session
        found = await session.exec(
            select(Payment)
            .where(Payment.gateway == gateway, Payment.gateway_payment_id == event.payment_id)
            .with_for_update()
        )
        payment = found.first()
        if payment is None:
            # Gateways do not promise order: the payment's own webhook may still be on its way.
            # Refused, the claim rolls back and the gateway sends this again later.
            raise ConflictError("the payment this refund is for is not recorded yet")
        if payment.currency != event.currency:
            return "unmatched", payment.account_id
        refund = await _refund_for(session, gateway, event, payment.id)
        if refund is not None and refund.status is RefundStatus.SUCCEEDED:
            return "duplicate", payment.account_id
        if payment.refunded_amount + event.amount > payment.amount:
            return "unmatched", payment.account_id  # more than was paid: not ours to apply
        invoice = await _locked_invoice(session, payment.account_id, payment.invoice_id)
        await lock_customer(session, payment.account_id, payment.customer_id)
        credit_refunded = await session.exec(
            select(func.coalesce(func.sum(PaymentRefund.from_credit), 0)).where(
                PaymentRefund.payment_id == payment.id,
                PaymentRefund.status == RefundStatus.SUCCEEDED,
            )
        )
        balance = await credit_balance(
            session, payment.account_id, payment.customer_id, invoice.currency
        )
        unused = min(payment.credit_amount - Decimal(credit_refunded.one() or 0), balance)
        split = split_refund(event.amount, credit_available=unused)
        # Past what the invoice holds, the customer owes it back: their credit goes below zero.
        from_invoice = min(split.from_invoice, invoice.amount_paid)
        from_credit = event.amount - from_invoice
        now = datetime.now(UTC)
        if refund is None:
            refund = PaymentRefund(
                account_id=payment.account_id,
                payment_id=payment.id,
                gateway=gateway,
                amount=event.amount,
                reason="refunded at the payment gateway",
            )
        refund.gateway_refund_id = refund.gateway_refund_id or event.refund_id
        refund.amount = event.amount
        refund.status = RefundStatus.SUCCEEDED
        refund.from_credit, refund.from_invoice, refund.refunded_at = from_credit, from_invoice, now
        session.add(refund)
        payment.refunded_amount += event.amount
        session.add(payment)
        previous = invoice.status
        invoice.amount_paid -= from_invoice
        if invoice.status in ISSUED_STATUSES:
            announce_status(work, invoice, previous)
        session.add(invoice)
        await session.flush()
        if from_credit:
            session.add(
                CustomerCredit(
                    account_id=payment.account_id,
                    customer_id=payment.customer_id,
                    currency=payment.currency,
                    amount=-from_credit,
                    kind=CreditKind.REFUNDED,
                    payment_id=payment.id,
                    refund_id=refund.id,
                )
            )
        work.emit(
            PaymentRefunded(
                account_id=payment.account_id,
                refund_id=refund.id,
                payment_id=payment.id,
                invoice_id=invoice.id,
                currency=payment.currency,
                amount=event.amount,
                from_credit=from_credit,
                from_invoice=from_invoice,
                refunded_at=now,
            )
        )
        return "recorded", payment.account_id

    async def _refund_failed(
        self, work: Work, gateway: str, event: GatewayEvent
    ) -> tuple[str, UUID | None]:
        """A requested refund the gateway could not make: no longer held against the payment."""
        found = await work.session.exec(
            select(Payment).where(
                Payment.gateway == gateway, Payment.gateway_payment_id == event.payment_id
            )
        )
        payment = found.first()
        if payment is None:
            return "unmatched", None
        refund = await _refund_for(work.session, gateway, event, payment.id)
        if refund is None or refund.status is not RefundStatus.REQUESTED:
            return "ignored", payment.account_id
        refund.status = RefundStatus.FAILED
        refund.gateway_refund_id = refund.gateway_refund_id or event.refund_id
        work.session.add(refund)
        return "recorded", payment.account_id

    # refunds

    async def refund(
        self, *, principal: Principal, payment_id: UUID, request: RefundCreate
    ) -> PaymentRefund:
        """Ask the gateway to give back part or all of a payment; it counts once confirmed."""
        account_id = principal.require_user()
        async with self.units() as work:
            found = await work.session.exec(
                select(Payment)
                .where(Payment.account_id == account_id, Payment.id == payment_id)
                .with_for_update()  # one refund request at a time per payment
            )
            payment = found.first()
            if payment is None:
                raise NotFoundError("no such payment in this account")
            gateway = self._gateway()
            if payment.gateway != gateway.name:
                raise ConflictError("this payment was taken by another gateway", field="gateway")
            pending = await work.session.exec(
                select(func.coalesce(func.sum(PaymentRefund.amount), 0)).where(
                    PaymentRefund.payment_id == payment.id,
                    PaymentRefund.status == RefundStatus.REQUESTED,
                )
            )
            left = payment.amount - payment.refunded_amount - Decimal(pending.one())
            if left <= 0:
                raise ConflictError("nothing is left to refund of this payment", field="amount")
            amount = _amount_within(request.amount, left, payment.currency, what="left to refund")
            refund = PaymentRefund(
                account_id=account_id,
                payment_id=payment.id,
                gateway=gateway.name,
                amount=amount,
                reason=request.reason,
                requested_by_user_id=principal.user_id,
            )
            work.session.add(refund)
            gateway_payment_id, currency = payment.gateway_payment_id, payment.currency
        try:
            gateway_refund_id = await gateway.refund(
                RefundRequest(
                    refund_id=refund.id,
                    payment_id=gateway_payment_id,
                    amount=amount,
                    currency=currency,
                )
            )
        except GatewayError as exc:
            async with self.units() as work:
                await work.session.exec(
                    update(PaymentRefund)
                    .where(
                        col(PaymentRefund.id) == refund.id,
                        col(PaymentRefund.status) == RefundStatus.REQUESTED,
                    )
                    .values(status=RefundStatus.FAILED)
                )
            raise GatewayUnavailableError(str(exc)) from exc
        async with self.units() as work:
            # The webhook may have come first and set it: then it stays.
            await work.session.exec(
                update(PaymentRefund)
                .where(
                    col(PaymentRefund.id) == refund.id,
                    col(PaymentRefund.gateway_refund_id).is_(None),
                )
                .values(gateway_refund_id=gateway_refund_id)
            )
            current: PaymentRefund | None = await work.session.get(PaymentRefund, refund.id)
        assert current is not None
        return current

    # reading

    async def list(
        self, *, principal: Principal, invoice_id: UUID | None, limit: int, offset: int
    ) -> list[PaymentWithRefunds]:
        """The account's payments, newest first, with their refunds."""
        account_id = principal.require_user()
        query = select(Payment).where(Payment.account_id == account_id)
        if invoice_id is not None:
            query = query.where(Payment.invoice_id == invoice_id)
        query = query.order_by(col(Payment.received_at).desc(), col(Payment.id))
        async with self.sessions() as session:
            payments = list((await session.exec(query.limit(limit).offset(offset))).all())
            refunds = await _refunds_of(session, [p.id for p in payments])
        return [PaymentWithRefunds(p, refunds.get(p.id, [])) for p in payments]

    async def get(self, *, principal: Principal, payment_id: UUID) -> PaymentWithRefunds:
        """One of the account's payments."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            found = await session.exec(
                select(Payment).where(Payment.account_id == account_id, Payment.id == payment_id)
            )
            payment = found.first()
            if payment is None:
                raise NotFoundError("no such payment in this account")
            refunds = await _refunds_of(session, [payment.id])
        return PaymentWithRefunds(payment, refunds.get(payment.id, []))

    # customer credit

    async def balances(self, *, principal: Principal, customer_id: UUID) -> dict[str, Decimal]:
        """A customer's unused credit per currency (currencies ever credited)."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            known = await session.exec(
                select(Customer.id).where(
                    Customer.account_id == account_id, Customer.id == customer_id
                )
            )
            if known.first() is None:
                raise NotFoundError("no such customer in this account")
            found = await session.exec(
                select(CustomerCredit.currency, func.sum(CustomerCredit.amount))
                .where(
                    CustomerCredit.account_id == account_id,
                    CustomerCredit.customer_id == customer_id,
                )
                .group_by(col(CustomerCredit.currency))
                .order_by(col(CustomerCredit.currency))
            )
            return {currency: Decimal(total) for currency, total in found.all()}

    async def apply_credit(
        self, *, principal: Principal, invoice_id: UUID, request: CreditApply
    ) -> Invoice:
        """Pay an issued invoice from its customer's credit in the invoice's currency."""
        account_id = principal.require_user()
        async with self.units() as work:
            invoice = await _locked_invoice(work.session, account_id, invoice_id)
            if invoice.status not in ISSUED_STATUSES:
                raise ConflictError(f"invoice is {invoice.status}: nothing to pay", field="status")
            due = amount_due(invoice.total, invoice.credited_total, invoice.amount_paid)
            await lock_customer(work.session, account_id, invoice.customer_id)
            balance = await credit_balance(
                work.session, account_id, invoice.customer_id, invoice.currency
            )
            if due <= 0 or balance <= 0:
                raise ConflictError(
                    "nothing to apply: the invoice is settled or the customer has no credit "
                    f"in {invoice.currency}",
                    field="amount",
                )
            amount = _amount_within(
                request.amount,
                min(due, balance),
                invoice.currency,
                what="the credit covers of what is due",
            )
            previous = invoice.status
            invoice.amount_paid += amount
            announce_status(work, invoice, previous)
            work.session.add(invoice)
            work.session.add(
                CustomerCredit(
                    id=uuid4(),
                    account_id=account_id,
                    customer_id=invoice.customer_id,
                    currency=invoice.currency,
                    amount=-amount,
                    kind=CreditKind.APPLIED,
                    invoice_id=invoice.id,
                )
            )
        return invoice


async def _checkout(
    session: AsyncSession, gateway: str, reference: str | None
) -> PaymentCheckout | None:
    """The checkout a payment's reference names (billing's own id, echoed by the gateway)."""
    try:
        checkout_id = UUID(reference or "")
    except ValueError:
        return None
    found = await session.exec(
        select(PaymentCheckout).where(
            PaymentCheckout.id == checkout_id, PaymentCheckout.gateway == gateway
        )
    )
    return found.first()


async def _refund_for(
    session: AsyncSession, gateway: str, event: GatewayEvent, payment_id: UUID
) -> PaymentRefund | None:
    """The refund billing requested that a webhook confirms: by billing's reference, or by the
    gateway's refund id; None for a refund made at the gateway itself."""
    try:
        reference: UUID | None = UUID(event.reference or "")
    except ValueError:
        reference = None
    condition = col(PaymentRefund.gateway_refund_id) == event.refund_id
    if reference is not None:
        condition = condition | (col(PaymentRefund.id) == reference)
    found = await session.exec(
        select(PaymentRefund)
        .where(PaymentRefund.payment_id == payment_id, PaymentRefund.gateway == gateway)
        .where(condition)
        .with_for_update()
    )
    return found.first()


async def _refunds_of(
    session: AsyncSession, payment_ids: list[UUID]
) -> dict[UUID, list[PaymentRefund]]:
    if not payment_ids:
        return {}
    found = await session.exec(
        select(PaymentRefund)
        .where(col(PaymentRefund.payment_id).in_(payment_ids))
        .order_by(col(PaymentRefund.created_at), col(PaymentRefund.id))
    )
    refunds: dict[UUID, list[PaymentRefund]] = {}
    for refund in found.all():
        refunds.setdefault(refund.payment_id, []).append(refund)
    return refunds
