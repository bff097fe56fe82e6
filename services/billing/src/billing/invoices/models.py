"""Invoices and their lines: tables and API schemas."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pydantic
from pydantic import AfterValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.invoices.domain import (
    MAX_DUE_YEARS,
    MAX_LINE_AMOUNT,
    InvoiceStatus,
    invoice_currencies,
    is_invoice_currency,
)
from billing.schemas import Schema
from shared.input_types import DecimalOutput, DecimalString, Description


class Invoice(BillingTable, table=True):
    """An invoice: a draft until issued, then numbered and immutable."""

    __table_args__ = (UniqueConstraint("account_id", "number"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    number: str | None = None
    status: InvoiceStatus = Field(default=InvoiceStatus.DRAFT)
    currency: str = Field(max_length=3)
    total: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    issue_date: date | None = None
    due_date: date
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    issued_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Who issued it to whom, as printed: fixed at issue, whatever is corrected later (RECTIFY).
    seller_name: str | None = None
    seller_address: str | None = None
    seller_tax_id: str | None = None
    customer_name: str | None = None
    customer_email: str | None = None
    customer_address: str | None = None


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


class InvoiceLineCreate(Schema):
    """One line of a draft invoice."""

    description: Description = pydantic.Field(description="What is billed.")
    quantity: Annotated[Decimal, DecimalString(QUANTITY_PATTERN, "2.5")] = pydantic.Field(
        gt=0, le=1_000_000_000, decimal_places=4, description="How many: more than 0, at most 1e9."
    )
    unit_price: Annotated[Decimal, DecimalString(UNIT_PRICE_PATTERN, "10.50")] = pydantic.Field(
        ge=0, le=1_000_000_000_000, decimal_places=4, description="Price each: 0 to 1e12."
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
    due_date: date = pydantic.Field(
        description="Payment due date: not before today (the earliest issue date), "
        f"at most {MAX_DUE_YEARS} years ahead."
    )
    lines: list[InvoiceLineCreate] = pydantic.Field(
        min_length=1, max_length=500, description="Lines."
    )
    issue: bool = pydantic.Field(
        default=False, description="Issue it now: numbered, dated today and sent."
    )

    @field_validator("due_date")
    @classmethod
    def _due_date_plausible(cls, due: date) -> date:
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
    amount: DecimalOutput


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


class InvoicePublic(Schema):
    """An invoice as the API shows it."""

    id: UUID
    customer_id: UUID
    number: str | None
    status: InvoiceStatus
    currency: str
    total: DecimalOutput
    issue_date: date | None
    due_date: date
    issued_at: datetime | None
    seller: SellerPublic | None = pydantic.Field(description="As issued; null on a draft.")
    bill_to: BillToPublic | None = pydantic.Field(description="As issued; null on a draft.")
    lines: list[InvoiceLinePublic]
