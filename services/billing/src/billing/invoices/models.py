"""Invoices and their lines: tables and API schemas."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.inputs import SafeText
from billing.invoices.domain import InvoiceStatus
from billing.schemas import Schema


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


class InvoiceLineCreate(Schema):
    """One line of a draft invoice."""

    description: SafeText = pydantic.Field(
        min_length=1, max_length=1000, description="What is billed."
    )
    quantity: Decimal = pydantic.Field(
        gt=0, max_digits=14, decimal_places=4, description="How many."
    )
    unit_price: Decimal = pydantic.Field(
        ge=0, max_digits=14, decimal_places=4, description="Price each."
    )


class InvoiceCreate(Schema):
    """Draft an invoice."""

    customer_id: UUID = pydantic.Field(description="The customer invoiced.")
    currency: str = pydantic.Field(pattern="^[A-Z]{3}$", description="ISO 4217 code.")
    due_date: date = pydantic.Field(description="Payment due date.")
    lines: list[InvoiceLineCreate] = pydantic.Field(
        min_length=1, max_length=500, description="Lines."
    )


class InvoiceLinePublic(Schema):
    """An invoice line as the API shows it."""

    position: int
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


class InvoicePublic(Schema):
    """An invoice as the API shows it."""

    id: UUID
    customer_id: UUID
    number: str | None
    status: InvoiceStatus
    currency: str
    total: Decimal
    issue_date: date | None
    due_date: date
    issued_at: datetime | None
    lines: list[InvoiceLinePublic]
