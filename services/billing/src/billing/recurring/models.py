"""Recurring invoices: tables and API schemas."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import pydantic
from pydantic import ValidationInfo, field_validator
from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.invoices.domain import MAX_DUE_YEARS
from billing.invoices.models import (
    EARLIEST_TIME_ZONE,
    CurrencyCode,
    InvoiceLineCreate,
    TermsDays,
)
from billing.recurring.domain import Interval, ScheduleStatus
from billing.schemas import Schema
from shared.input_types import WHOLE_NUMBER_ONLY


class RecurringInvoice(BillingTable, table=True):
    """A schedule: the invoice it issues (customer, lines, terms) and when."""

    __tablename__ = "recurring_invoice"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    currency: str | None = Field(default=None, max_length=3)  # None: the account's
    payment_terms_days: int | None = None  # None: the account's
    lines: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    # Named: "interval" is a type of PostgreSQL's own.
    interval: Interval = Field(
        sa_column=Column(SAEnum(Interval, name="recurrenceinterval"), nullable=False)
    )
    interval_count: int
    start_date: date
    end_date: date | None = None
    periods_done: int = 0
    next_run_on: date | None = Field(default=None, index=True)  # None once ended
    status: ScheduleStatus = Field(default=ScheduleStatus.ACTIVE)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    last_run_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = None  # why it was paused by the runner


class RecurringRun(BillingTable, table=True):
    """One period of a schedule and the invoice it issued: unique per period, so a period is
    issued once whichever instance runs it."""

    __tablename__ = "recurring_run"
    __table_args__ = (UniqueConstraint("schedule_id", "period"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    schedule_id: UUID = Field(foreign_key="recurring_invoice.id", index=True)
    period: date
    invoice_id: UUID | None = Field(default=None, foreign_key="invoice.id", index=True)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class RecurringCreate(Schema):
    """Issue the same invoice every period, from the start date on."""

    customer_id: UUID = pydantic.Field(description="The customer invoiced.")
    currency: CurrencyCode | None = pydantic.Field(
        default=None, description="ISO 4217 code; by default the account's currency."
    )
    payment_terms_days: TermsDays | None = pydantic.Field(
        default=None, description="Each invoice is due so many days after it is issued."
    )
    lines: list[InvoiceLineCreate] = pydantic.Field(
        min_length=1, max_length=500, description="The lines of each invoice."
    )
    interval: Interval = pydantic.Field(description="week, month or year.")
    interval_count: Annotated[int, pydantic.Field(ge=1, le=12), WHOLE_NUMBER_ONLY] = pydantic.Field(
        default=1, description="Every so many intervals: 1 to 12."
    )
    start_date: date = pydantic.Field(description="The first invoice's date: today or later.")
    end_date: date | None = pydantic.Field(
        default=None, description="No invoice after this date; none: until ended."
    )

    @field_validator("start_date")
    @classmethod
    def _start_plausible(cls, start: date) -> date:
        today = datetime.now(EARLIEST_TIME_ZONE).date()
        if start < today:
            raise ValueError("must not be before today")
        if start.year > today.year + MAX_DUE_YEARS:
            raise ValueError(f"must be at most {MAX_DUE_YEARS} years ahead")
        return start

    @field_validator("end_date")
    @classmethod
    def _end_after_start(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")
        if end is not None and start is not None and end < start:
            raise ValueError("must not be before the start date")
        return end


class RecurringRunPublic(Schema):
    """A period issued, and its invoice."""

    period: date
    invoice_id: UUID | None


class RecurringPublic(Schema):
    """A schedule as the API shows it."""

    id: UUID
    customer_id: UUID
    currency: str | None
    payment_terms_days: int | None
    lines: list[dict[str, Any]]
    interval: Interval
    interval_count: int
    start_date: date
    end_date: date | None
    next_run_on: date | None
    status: ScheduleStatus
    periods_done: int
    last_error: str | None = pydantic.Field(description="Why the runner paused it, if it did.")
    created_at: datetime | None
    runs: list[RecurringRunPublic]
