"""Billing's tables and API schemas (the SQLModel family: Base, Create, table, Public)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID, uuid4

import pydantic
from pydantic import AfterValidator, ConfigDict, EmailStr, field_validator
from sqlalchemy import Column, DateTime, Numeric, UniqueConstraint, func
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from billing.domain import AccountStatus, InvoiceStatus, Role, contains_card_number
from shared.contracts import AccessPurpose


def _refuse_card_numbers(value: str) -> str:
    if contains_card_number(value):
        raise ValueError("must not contain a payment card number; use the payment gateway")
    return value


def _refuse_control_characters(value: str) -> str:
    # A CR or LF in a name would otherwise end up in a mail header, a NUL in the database.
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise ValueError("must not contain control characters")
    return value


SafeText = Annotated[
    str, AfterValidator(_refuse_control_characters), AfterValidator(_refuse_card_numbers)
]
"""Free text refused if it holds control characters or a card number (NO-PAN)."""


class BillingTable(SQLModel, registry=registry()):
    """Base of billing's tables; its metadata is billing's alone."""


def _created_at() -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=False, server_default=func.now())


# ---------------------------------------------------------------- tables


class Account(BillingTable, table=True):
    """A customer company: the tenant every other row belongs to."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    plan: str
    status: AccountStatus = Field(default=AccountStatus.ACTIVE)
    next_invoice_number: int = Field(default=1)
    created_at: datetime | None = Field(default=None, sa_column=_created_at())
    terminated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AppUser(BillingTable, table=True):
    """A person who uses an account."""

    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    name: str
    email: str
    role: Role
    created_at: datetime | None = Field(default=None, sa_column=_created_at())


class StaffMember(BillingTable, table=True):
    """A named Quittance employee who may read customer data under a grant."""

    __tablename__ = "staff_member"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    email: str = Field(unique=True)
    created_at: datetime | None = Field(default=None, sa_column=_created_at())


class ApiKey(BillingTable, table=True):
    """A bearer credential of a user or a staff member; only its hash is kept."""

    __tablename__ = "api_key"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    key_hash: str = Field(unique=True)
    account_id: UUID | None = Field(default=None, foreign_key="account.id", index=True)
    user_id: UUID | None = Field(default=None, foreign_key="app_user.id", index=True)
    staff_id: UUID | None = Field(default=None, foreign_key="staff_member.id")
    created_at: datetime | None = Field(default=None, sa_column=_created_at())
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AccessGrant(BillingTable, table=True):
    """Permission for one staff member to read one account's data, for a purpose, until expiry."""

    __tablename__ = "access_grant"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    staff_id: UUID = Field(foreign_key="staff_member.id")
    purpose: AccessPurpose
    reason: str
    granted_by_user_id: UUID = Field(foreign_key="app_user.id", index=True)
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=_created_at())


class Customer(BillingTable, table=True):
    """Someone an account invoices."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    name: str
    email: str
    address: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=_created_at())


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
    created_at: datetime | None = Field(default=None, sa_column=_created_at())
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


# ---------------------------------------------------------------- API schemas


class _Schema(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class OwnerCreate(_Schema):
    """The person who opens the account and owns it."""

    name: SafeText = pydantic.Field(min_length=1, max_length=200, description="Owner's full name.")
    email: EmailStr = pydantic.Field(description="Owner's email; the termination export goes here.")


class AccountCreate(_Schema):
    """Open an account."""

    name: SafeText = pydantic.Field(min_length=1, max_length=200, description="Company name.")
    plan: str = pydantic.Field(
        default="standard", pattern="^(free|standard|enterprise)$", description="Subscription plan."
    )
    owner: OwnerCreate = pydantic.Field(description="The first user, with the owner role.")


class AccountPublic(_Schema):
    """An account as the API shows it."""

    id: UUID
    name: str
    plan: str
    status: AccountStatus
    created_at: datetime | None
    terminated_at: datetime | None


class UserPublic(_Schema):
    """A user as the API shows it."""

    id: UUID
    name: str
    email: str
    role: Role


class AccountOpened(_Schema):
    """The new account, its owner, and the owner's API key (shown once)."""

    account: AccountPublic
    owner: UserPublic
    api_key: str = pydantic.Field(description="Bearer token; only its hash is stored.")


class StaffCreate(_Schema):
    """Register a staff member (operator only)."""

    name: SafeText = pydantic.Field(min_length=1, max_length=200, description="Full name.")
    email: EmailStr = pydantic.Field(description="Work email.")


class StaffPublic(_Schema):
    """A staff member as the API shows it."""

    id: UUID
    name: str
    email: str


class StaffRegistered(_Schema):
    """The staff member and their API key (shown once)."""

    staff: StaffPublic
    api_key: str


class AccessGrantCreate(_Schema):
    """Let a named staff member read this account's data for a purpose, until expiry."""

    staff_id: UUID = pydantic.Field(description="Who may read.")
    purpose: AccessPurpose = pydantic.Field(description="Why, from the closed list.")
    reason: SafeText = pydantic.Field(min_length=3, max_length=500, description="Ticket or reason.")
    expires_at: datetime = pydantic.Field(description="When the grant lapses (timezone required).")

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a timezone")
        return value


class AccessGrantPublic(_Schema):
    """An access grant as the API shows it."""

    id: UUID
    account_id: UUID
    staff_id: UUID
    purpose: AccessPurpose
    reason: str
    expires_at: datetime
    revoked_at: datetime | None


class CustomerCreate(_Schema):
    """Add a customer to invoice."""

    name: SafeText = pydantic.Field(min_length=1, max_length=200, description="Customer's name.")
    email: EmailStr = pydantic.Field(description="Where invoices are sent.")
    address: SafeText | None = pydantic.Field(
        default=None, max_length=1000, description="Postal address."
    )


class CustomerPublic(_Schema):
    """A customer as the API shows it."""

    id: UUID
    name: str
    email: str
    address: str | None
    created_at: datetime | None


class InvoiceLineCreate(_Schema):
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


class InvoiceCreate(_Schema):
    """Draft an invoice."""

    customer_id: UUID = pydantic.Field(description="The customer invoiced.")
    currency: str = pydantic.Field(pattern="^[A-Z]{3}$", description="ISO 4217 code.")
    due_date: date = pydantic.Field(description="Payment due date.")
    lines: list[InvoiceLineCreate] = pydantic.Field(
        min_length=1, max_length=500, description="Lines."
    )


class InvoiceLinePublic(_Schema):
    """An invoice line as the API shows it."""

    position: int
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


class InvoicePublic(_Schema):
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
