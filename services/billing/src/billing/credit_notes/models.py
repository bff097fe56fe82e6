"""Credit notes: corrections of an issued invoice, in their own gapless series."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.invoices.models import InvoiceLineCreate, InvoiceLinePublic, TaxTotalPublic
from billing.schemas import Schema
from shared.input_types import DecimalOutput, Description


class CreditNote(BillingTable, table=True):
    """A credit note: numbered when made, immutable, against one issued invoice."""

    __tablename__ = "credit_note"
    __table_args__ = (UniqueConstraint("account_id", "number"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    invoice_id: UUID = Field(foreign_key="invoice.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    number: str
    currency: str = Field(max_length=3)
    reason: str
    subtotal: Decimal = Field(sa_column=Column(Numeric(20, 4), nullable=False))
    tax_total: Decimal = Field(sa_column=Column(Numeric(20, 4), nullable=False))
    total: Decimal = Field(sa_column=Column(Numeric(20, 4), nullable=False))
    issue_date: date
    issued_at: datetime = Field(sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    # As printed: the parties of the invoice it corrects.
    seller_name: str
    seller_address: str | None = None
    seller_tax_id: str | None = None
    customer_name: str
    customer_email: str
    customer_address: str | None = None


class CreditNoteLine(BillingTable, table=True):
    """One line of a credit note: what is credited, priced as an invoice line."""

    __tablename__ = "credit_note_line"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    credit_note_id: UUID = Field(foreign_key="credit_note.id", index=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    position: int
    description: str
    quantity: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    unit_price: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    discount_percent: Decimal = Field(sa_column=Column(Numeric(7, 4), nullable=False))
    discount_amount: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    tax_rate: Decimal = Field(sa_column=Column(Numeric(7, 4), nullable=False))


class CreditNoteCreate(Schema):
    """Credit an issued invoice: the lines credited, or none to credit all of it."""

    reason: Description = pydantic.Field(description="Why, as the credit note states it.")
    lines: list[InvoiceLineCreate] | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=500,
        description="What is credited, priced as invoice lines (taxed at the invoice's rates); "
        "leave out to credit the whole invoice, when nothing of it is credited yet.",
    )


class CreditNotePublic(Schema):
    """A credit note as the API shows it."""

    id: UUID
    invoice_id: UUID
    customer_id: UUID
    number: str
    currency: str
    reason: str
    subtotal: DecimalOutput
    taxes: list[TaxTotalPublic]
    tax_total: DecimalOutput
    total: DecimalOutput = pydantic.Field(description="What is credited against the invoice.")
    issue_date: date
    issued_at: datetime
    lines: list[InvoiceLinePublic]
