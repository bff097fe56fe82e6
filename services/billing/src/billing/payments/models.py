"""Payments: checkout links, payments, refunds, customer credit, and the webhook inbox."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import CheckConstraint, Column, DateTime, Numeric, UniqueConstraint
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from shared.input_types import DecimalOutput, DecimalString, Description

# An amount of money: more than 0, at most 16 digits and 4 decimal places; the currency's
# minor unit is checked against the invoice's currency.
AMOUNT_PATTERN = r"^(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,4})?$"
Amount = Annotated[Decimal, DecimalString(AMOUNT_PATTERN, "25.00")]


def _money() -> Column[Decimal]:
    return Column(Numeric(20, 4), nullable=False)


class PaymentCheckout(BillingTable, table=True):
    """A hosted payment page opened at the gateway for an invoice: the payer's link."""

    __tablename__ = "payment_checkout"
    __table_args__ = (UniqueConstraint("gateway", "gateway_session_id"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    invoice_id: UUID = Field(foreign_key="invoice.id", index=True)
    gateway: str
    gateway_session_id: str | None = None  # set once the gateway answers
    amount: Decimal = Field(sa_column=_money())
    currency: str = Field(max_length=3)
    url: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class Payment(BillingTable, table=True):
    """Money received through the gateway, recorded from its verified webhook only."""

    __table_args__ = (
        UniqueConstraint("gateway", "gateway_payment_id"),
        CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refunds_within_payment"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    invoice_id: UUID = Field(foreign_key="invoice.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    checkout_id: UUID = Field(foreign_key="payment_checkout.id", index=True)
    gateway: str
    gateway_payment_id: str
    currency: str = Field(max_length=3)
    amount: Decimal = Field(sa_column=_money())
    applied_amount: Decimal = Field(sa_column=_money())  # settled the invoice when received
    credit_amount: Decimal = Field(sa_column=_money())  # overpayment: the customer's credit
    refunded_amount: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(20, 4), nullable=False, server_default="0")
    )
    received_at: datetime = Field(sa_type=DateTime(timezone=True))


class RefundStatus(StrEnum):
    """A refund is asked of the gateway, then confirmed by its webhook."""

    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PaymentRefund(BillingTable, table=True):
    """Money given back from a payment; it counts once the gateway's webhook confirms it."""

    __tablename__ = "payment_refund"
    __table_args__ = (UniqueConstraint("gateway", "gateway_refund_id"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    payment_id: UUID = Field(foreign_key="payment.id", index=True)
    gateway: str
    gateway_refund_id: str | None = None
    amount: Decimal = Field(sa_column=_money())
    status: RefundStatus = Field(default=RefundStatus.REQUESTED)
    reason: str | None = None
    from_credit: Decimal | None = Field(default=None, sa_column=Column(Numeric(20, 4)))
    from_invoice: Decimal | None = Field(default=None, sa_column=Column(Numeric(20, 4)))
    requested_by_user_id: UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    refunded_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class CreditKind(StrEnum):
    """Why a customer's credit moved."""

    OVERPAYMENT = "overpayment"  # paid more than was due
    CREDIT_NOTE = "credit_note"  # credited after being paid
    APPLIED = "applied"  # used to pay an invoice
    REFUNDED = "refunded"  # given back through the gateway


class CustomerCredit(BillingTable, table=True):
    """One movement of a customer's credit in a currency; the balance is their sum."""

    __tablename__ = "customer_credit"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    currency: str = Field(max_length=3)
    amount: Decimal = Field(sa_column=_money())  # positive: credit gained; negative: used
    kind: CreditKind
    payment_id: UUID | None = Field(default=None, foreign_key="payment.id", index=True)
    refund_id: UUID | None = Field(default=None, foreign_key="payment_refund.id", index=True)
    invoice_id: UUID | None = Field(default=None, foreign_key="invoice.id", index=True)
    credit_note_id: UUID | None = Field(default=None, foreign_key="credit_note.id", index=True)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class GatewayWebhook(BillingTable, table=True):
    """The webhook inbox: each gateway event id is acted on once (redeliveries are no-ops)."""

    __tablename__ = "gateway_webhook"

    gateway: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    account_id: UUID | None = Field(default=None, foreign_key="account.id", index=True)
    outcome: str  # recorded, ignored, unmatched
    received_at: datetime | None = Field(default=None, sa_column=created_at_column())


class CheckoutCreate(Schema):
    """Open a payment page at the gateway for an issued invoice."""

    amount: Amount | None = pydantic.Field(
        default=None,
        gt=0,
        decimal_places=4,
        description="A part payment; by default everything the invoice still asks for.",
    )


class CheckoutPublic(Schema):
    """A payment page: send the payer to its url."""

    id: UUID
    invoice_id: UUID
    amount: DecimalOutput
    currency: str
    url: str = pydantic.Field(description="The gateway's hosted page: cards never reach us.")
    created_at: datetime | None


class RefundCreate(Schema):
    """Give back part or all of a payment through the gateway."""

    amount: Amount | None = pydantic.Field(
        default=None, gt=0, decimal_places=4, description="By default all that is left of it."
    )
    reason: Description | None = pydantic.Field(default=None, description="Why.")


class RefundPublic(Schema):
    """A refund: requested, then succeeded once the gateway confirms it."""

    id: UUID
    payment_id: UUID
    amount: DecimalOutput
    status: RefundStatus
    reason: str | None
    from_credit: DecimalOutput | None = pydantic.Field(
        description="The part taken from the customer's credit, once succeeded."
    )
    from_invoice: DecimalOutput | None = pydantic.Field(
        description="The part taken back from the invoice, owed again, once succeeded."
    )
    created_at: datetime | None
    refunded_at: datetime | None


class PaymentPublic(Schema):
    """A payment received through the gateway, with its refunds."""

    id: UUID
    invoice_id: UUID
    customer_id: UUID
    gateway: str
    currency: str
    amount: DecimalOutput
    applied_amount: DecimalOutput = pydantic.Field(description="What settled the invoice.")
    credit_amount: DecimalOutput = pydantic.Field(description="Kept as the customer's credit.")
    refunded_amount: DecimalOutput
    received_at: datetime
    refunds: list[RefundPublic]


class CreditBalancePublic(Schema):
    """A customer's unused credit in one currency."""

    currency: str
    balance: DecimalOutput


class CreditApply(Schema):
    """Pay an issued invoice from the customer's credit in its currency."""

    amount: Amount | None = pydantic.Field(
        default=None,
        gt=0,
        decimal_places=4,
        description="By default as much as the credit covers of what is due.",
    )
