"""Invoices and their lines: tables and API schemas."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pydantic
from pydantic import AfterValidator, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.invoices.domain import (
    MAX_DUE_YEARS,
    MAX_LINE_AMOUNT,
    MAX_TERMS_DAYS,
    InvoiceStatus,
    invoice_currencies,
    is_invoice_currency,
)
from billing.schemas import Schema
from shared.input_types import WHOLE_NUMBER_ONLY, DecimalOutput, DecimalString, Description


class Invoice(BillingTable, table=True):
    """An invoice: a draft until issued, then numbered and immutable."""

    __table_args__ = (UniqueConstraint("account_id", "number"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    number: str | None = None
    status: InvoiceStatus = Field(default=InvoiceStatus.DRAFT)
    currency: str = Field(max_length=3)
    # Sums of up to 500 lines of up to 1e12, taxed up to 100%: 16 digits before the point.
    subtotal: Decimal = Field(sa_column=Column(Numeric(20, 4), nullable=False))
    tax_total: Decimal = Field(sa_column=Column(Numeric(20, 4), nullable=False))
    total: Decimal = Field(sa_column=Column(Numeric(20, 4), nullable=False))
    # The sum of its credit notes' totals: never more than the total.
    credited_total: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(20, 4), nullable=False, server_default="0")
    )
    # Payments applied to it, net of refunds, and customer credit applied: never more than the
    # total less what is credited (an overpayment is the customer's credit instead).
    amount_paid: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(20, 4), nullable=False, server_default="0")
    )
    issue_date: date | None = None
    # A draft on payment terms has none until it is issued: then issue date + terms.
    due_date: date | None = None
    payment_terms_days: int | None = None
    voided_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    void_reason: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    issued_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Who issued it to whom, as printed: fixed at issue, whatever is corrected later (RECTIFY).
    seller_name: str | None = None
    seller_address: str | None = None
    seller_tax_id: str | None = None
    customer_name: str | None = None
    customer_email: str | None = None
    customer_address: str | None = None
    customer_tax_id: str | None = None


class InvoiceLine(BillingTable, table=True):
    """One line of an invoice."""

    __tablename__ = "invoice_line"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    invoice_id: UUID = Field(foreign_key="invoice.id", index=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    position: int
    description: str
    quantity: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    unit_price: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    discount_percent: Decimal = Field(sa_column=Column(Numeric(7, 4), nullable=False))
    discount_amount: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    tax_rate: Decimal = Field(sa_column=Column(Numeric(7, 4), nullable=False))


def _invoice_currency(code: str) -> str:
    if not is_invoice_currency(code):
        raise ValueError("must be a current ISO 4217 currency code, such as EUR, USD or JPY")
    return code


CurrencyCode = Annotated[
    str,
    pydantic.Field(
        pattern="^[A-Z]{3}$",
        description="ISO 4217 code, such as EUR.",
        json_schema_extra={"enum": invoice_currencies()},  # listed, so clients can check it
    ),
    AfterValidator(_invoice_currency),
]


# At most 4 decimal places. A quantity: more than 0, at most 1e9; a price: 0 to 1e12.
QUANTITY_PATTERN = (
    r"^(?:[1-9][0-9]{0,8}(?:\.[0-9]{1,4})?|1000000000(?:\.0{1,4})?"
    r"|0\.(?:[1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$"
)
UNIT_PRICE_PATTERN = r"^(?:(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,4})?|1000000000000(?:\.0{1,4})?)$"
# A percentage from 0 to 100 with at most 3 decimal places (Quebec's 9.975%).
PERCENT_PATTERN = r"^(?:(?:0|[1-9][0-9]?)(?:\.[0-9]{1,3})?|100(?:\.0{1,3})?)$"
Percent = Annotated[Decimal, DecimalString(PERCENT_PATTERN, "20")]
TermsDays = Annotated[int, pydantic.Field(ge=0, le=MAX_TERMS_DAYS), WHOLE_NUMBER_ONLY]


class InvoiceLineCreate(Schema):
    """One line of a draft invoice."""

    description: Description = pydantic.Field(description="What is billed.")
    quantity: Annotated[Decimal, DecimalString(QUANTITY_PATTERN, "2.5")] = pydantic.Field(
        gt=0, le=1_000_000_000, decimal_places=4, description="How many: more than 0, at most 1e9."
    )
    unit_price: Annotated[Decimal, DecimalString(UNIT_PRICE_PATTERN, "10.50")] = pydantic.Field(
        ge=0, le=1_000_000_000_000, decimal_places=4, description="Price each: 0 to 1e12."
    )
    discount_percent: Percent = pydantic.Field(
        default=Decimal(0),
        ge=0,
        le=100,
        decimal_places=3,
        description="Discount on the line, in percent of quantity x unit price: 0 to 100.",
    )
    tax_rate: Percent = pydantic.Field(
        default=Decimal(0),
        ge=0,
        le=100,
        decimal_places=3,
        description="Tax (VAT, GST, sales tax) on the line's net, in percent: 0 to 100.",
    )

    @model_validator(mode="after")
    def _amount_fits(self) -> InvoiceLineCreate:
        if self.quantity * self.unit_price > MAX_LINE_AMOUNT:
            raise PydanticCustomError(
                "line_amount_too_large",
                "quantity x unit price must be at most {limit}",
                {"limit": str(MAX_LINE_AMOUNT)},
            )
        return self


EARLIEST_TIME_ZONE = ZoneInfo("Etc/GMT+12")  # UTC-12: where a date ends last


class InvoiceCreate(Schema):
    """Draft an invoice; with `issue`, draft and issue it at once."""

    customer_id: UUID = pydantic.Field(description="The customer invoiced.")
    currency: CurrencyCode | None = pydantic.Field(
        default=None, description="ISO 4217 code; by default the account's currency."
    )
    due_date: date | None = pydantic.Field(
        default=None,
        description="Payment due date: not before today (the earliest issue date), "
        f"at most {MAX_DUE_YEARS} years ahead. Or give payment_terms_days; with neither, the "
        "account's payment terms apply.",
    )
    payment_terms_days: TermsDays | None = pydantic.Field(
        default=None,
        description="Payment terms: due so many days after the issue date (0: on receipt).",
    )
    lines: list[InvoiceLineCreate] = pydantic.Field(
        min_length=1, max_length=500, description="Lines."
    )
    issue: pydantic.StrictBool = pydantic.Field(
        default=False, description="Issue it now: numbered, dated today and sent."
    )

    @field_validator("payment_terms_days")
    @classmethod
    def _terms_or_due_date(cls, days: int | None, info: ValidationInfo) -> int | None:
        # Named on the terms: the due date, declared first, is already validated.
        if days is not None and info.data.get("due_date") is not None:
            raise ValueError("give a due date or payment terms, not both")
        return days

    @field_validator("due_date")
    @classmethod
    def _due_date_plausible(cls, due: date | None) -> date | None:
        if due is None:
            return None
        # Invoices are dated where the seller is: the earliest issue date is today's date in
        # the westernmost time zone; issuing checks it against the account's own.
        today = datetime.now(EARLIEST_TIME_ZONE).date()
        if due < today:
            raise ValueError("must not be before today, the earliest issue date")
        if due.year > today.year + MAX_DUE_YEARS:
            raise ValueError(f"must be at most {MAX_DUE_YEARS} years ahead")
        return due


class InvoiceLinePublic(Schema):
    """An invoice line as the API shows it."""

    position: int
    description: str
    quantity: DecimalOutput
    unit_price: DecimalOutput
    amount: DecimalOutput = pydantic.Field(description="quantity x unit price.")
    discount_percent: DecimalOutput
    discount_amount: DecimalOutput
    net_amount: DecimalOutput = pydantic.Field(description="amount - discount, before tax.")
    tax_rate: DecimalOutput


class TaxTotalPublic(Schema):
    """One tax rate's total: the nets taxed at it and the tax on their sum."""

    rate: DecimalOutput
    taxable_amount: DecimalOutput
    tax_amount: DecimalOutput


class SellerPublic(Schema):
    """The account's details as printed on an issued invoice."""

    name: str
    address: str | None
    tax_id: str | None


class BillToPublic(Schema):
    """The customer's details as printed on an issued invoice."""

    name: str
    email: str
    address: str | None
    tax_id: str | None


class InvoicePublic(Schema):
    """An invoice as the API shows it."""

    id: UUID
    customer_id: UUID
    number: str | None
    status: InvoiceStatus
    currency: str
    subtotal: DecimalOutput = pydantic.Field(description="The lines' nets, after discounts.")
    taxes: list[TaxTotalPublic] = pydantic.Field(description="Tax per rate, rates above 0.")
    tax_total: DecimalOutput
    total: DecimalOutput = pydantic.Field(description="subtotal + tax_total.")
    credited_total: DecimalOutput = pydantic.Field(description="Credited by credit notes.")
    amount_paid: DecimalOutput = pydantic.Field(
        description="Paid through the gateway, net of refunds, and customer credit applied."
    )
    amount_due: DecimalOutput | None = pydantic.Field(
        description="total - credited_total - amount_paid; 0 once void; null on a draft, "
        "which is not due."
    )
    issue_date: date | None
    due_date: date | None = pydantic.Field(description="Null on a draft on payment terms.")
    payment_terms_days: int | None
    issued_at: datetime | None
    voided_at: datetime | None
    seller: SellerPublic | None = pydantic.Field(description="As issued; null on a draft.")
    bill_to: BillToPublic | None = pydantic.Field(description="As issued; null on a draft.")
    lines: list[InvoiceLinePublic]


class InvoiceVoid(Schema):
    """Void an issued invoice: it stays in the numbering, marked void, and is no longer due."""

    reason: Description = pydantic.Field(description="Why, as the account's records show it.")
