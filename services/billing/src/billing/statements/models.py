"""Statements: what the API answers (a statement is computed, never stored), and the record
of monthly statements emitted."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import UniqueConstraint
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from billing.statements.domain import EntryKind
from shared.input_types import DecimalOutput


class StatementFormat(StrEnum):
    """How the statement is answered."""

    JSON = "json"
    CSV = "csv"
    PDF = "pdf"


class StatementEntryPublic(Schema):
    """One document of the period, with the balance after it."""

    date: date
    kind: EntryKind
    number: str
    reference: str | None = pydantic.Field(description="The invoice a credit note corrects.")
    debit: DecimalOutput
    credit: DecimalOutput
    balance: DecimalOutput


class AgingPublic(Schema):
    """What is owed on the period's last day, by how long past due."""

    current: DecimalOutput
    days_1_30: DecimalOutput
    days_31_60: DecimalOutput
    days_61_90: DecimalOutput
    over_90: DecimalOutput


class StatementPublic(Schema):
    """A customer's account over a period, in one currency."""

    customer_id: UUID
    customer_name: str
    currency: str
    period_start: date
    period_end: date
    opening_balance: DecimalOutput = pydantic.Field(description="Owed before the period.")
    entries: list[StatementEntryPublic]
    invoiced: DecimalOutput = pydantic.Field(description="Invoices issued in the period.")
    credited: DecimalOutput = pydantic.Field(description="Credit notes issued in the period.")
    closing_balance: DecimalOutput = pydantic.Field(description="Owed at the period's end.")
    aging: AgingPublic


class StatementRun(BillingTable, table=True):
    """A monthly statement emitted: one per customer and month, whichever instance ran it."""

    __tablename__ = "statement_run"
    __table_args__ = (UniqueConstraint("customer_id", "period_start"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    period_start: date
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
