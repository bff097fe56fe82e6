"""Customers (whom an account invoices): table and API schemas."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import pydantic
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Patch, Schema, optional
from shared.input_types import EmailAddress, Name, SafeText


class Customer(BillingTable, table=True):
    """Someone an account invoices."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    name: str
    email: str
    address: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class CustomerCreate(Schema):
    """Add a customer to invoice."""

    name: Name = pydantic.Field(description="Customer's name.")
    email: EmailAddress = pydantic.Field(description="Where invoices are sent.")
    address: SafeText | None = pydantic.Field(
        default=None, description="Postal address, on one line."
    )


class CustomerChange(Patch):
    """Correct a customer's details; issued invoices keep those they were issued with."""

    name: Name = optional("Customer's name.")
    email: EmailAddress = optional("Where invoices are sent.")
    address: SafeText | None = optional("Postal address, on one line; null removes it.")


class CustomerPublic(Schema):
    """A customer as the API shows it."""

    id: UUID
    name: str
    email: str
    address: str | None
    created_at: datetime | None
