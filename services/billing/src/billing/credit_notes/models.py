"""Credit notes: corrections of an issued invoice, in their own gapless series."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID, uuid4

import pydantic
from pydantic import field_validator
from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.invoices.models import QUANTITY_PATTERN, InvoiceLinePublic, TaxTotalPublic
from billing.schemas import Schema
from shared.input_types import WHOLE_NUMBER_ONLY, DecimalOutput, DecimalString, Description


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
    # Tax per rate, as credited: [{"rate", "taxable_amount", "tax_amount"}] as decimal strings.
    taxes: list[dict[str, str]] = Field(sa_column=Column(JSONB, nullable=False))
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
    customer_tax_id: str | None = None


class CreditNoteLine(BillingTable, table=True):
    """One line of a credit note: what is credited, priced as an invoice line."""

    __tablename__ = "credit_note_line"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    credit_note_id: UUID = Field(foreign_key="credit_note.id", index=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    invoice_line_id: UUID = Field(foreign_key="invoice_line.id", index=True)
    invoice_line_position: int
    position: int
    description: str
    quantity: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    unit_price: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    discount_percent: Decimal = Field(sa_column=Column(Numeric(7, 4), nullable=False))
    discount_amount: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    tax_rate: Decimal = Field(sa_column=Column(Numeric(7, 4), nullable=False))


class CreditedLine(Schema):
    """How much of one invoice line is credited, at that line's price, discount and tax."""

    position: Annotated[int, pydantic.Field(ge=1, le=500), WHOLE_NUMBER_ONLY] = pydantic.Field(
        description="The invoice line's position."
    )
    quantity: Annotated[Decimal, DecimalString(QUANTITY_PATTERN, "1")] = pydantic.Field(
        gt=0, le=1_000_000_000, decimal_places=4, description="How much of it: more than 0."
    )


class CreditNoteCreate(Schema):
    """Credit an issued invoice: some of its lines, or everything not yet credited."""

    invoice_id: UUID = pydantic.Field(description="The issued invoice corrected.")
    reason: Description = pydantic.Field(description="Why, as the credit note states it.")
    lines: list[CreditedLine] | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=500,
        description="What is credited, each invoice line at most once and at most what is left "
        "of it; leave out to credit everything not yet credited.",
    )

    @field_validator("lines")
    @classmethod
    def _each_line_once(cls, lines: list[CreditedLine] | None) -> list[CreditedLine] | None:
        positions = [line.position for line in lines or []]
        if len(set(positions)) != len(positions):
            raise ValueError("name each invoice line once")
        return lines


class CreditNoteLinePublic(InvoiceLinePublic):
    """A credit note line: the part of an invoice line credited."""

    invoice_line_position: int


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
    lines: list[CreditNoteLinePublic]
