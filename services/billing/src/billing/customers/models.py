"""Customers (whom an account invoices): table and API schemas."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import pydantic
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Patch, Schema, optional
from shared.input_types import EmailAddress, Name, SafeText, TaxId


class Customer(BillingTable, table=True):
    """Someone an account invoices."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    name: str
    email: str
    address: str | None = None
    tax_id: str | None = None
    notes: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class CustomerContact(BillingTable, table=True):
    """A person at a customer: who to talk to, beside the address invoices go to."""

    __tablename__ = "customer_contact"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    customer_id: UUID = Field(foreign_key="customer.id", index=True)
    name: str
    email: str
    role: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


MAX_CONTACTS = 20


class ContactCreate(Schema):
    """A person at the customer."""

    name: Name = pydantic.Field(description="Their name.")
    email: EmailAddress = pydantic.Field(description="Their email.")
    role: Name | None = pydantic.Field(
        default=None, description="What they do for the customer, such as Accounts payable."
    )


class ContactPublic(Schema):
    """A contact as the API shows it."""

    id: UUID
    name: str
    email: str
    role: str | None


class CustomerCreate(Schema):
    """Add a customer to invoice."""

    name: Name = pydantic.Field(description="Customer's name.")
    email: EmailAddress = pydantic.Field(description="Where invoices are sent.")
    address: SafeText | None = pydantic.Field(
        default=None, description="Postal address, on one line."
    )
    tax_id: TaxId | None = pydantic.Field(
        default=None, description="Tax or VAT number, printed on their invoices."
    )
    notes: SafeText | None = pydantic.Field(
        default=None,
        description="Notes for the account's users; links in them are shown only as escaped "
        "http or https links marked nofollow noopener noreferrer (LINKS).",
    )
    contacts: list[ContactCreate] = pydantic.Field(
        default_factory=list, max_length=MAX_CONTACTS, description="People at the customer."
    )


class CustomerChange(Patch):
    """Correct a customer's details; issued invoices keep those they were issued with."""

    name: Name = optional("Customer's name.")
    email: EmailAddress = optional("Where invoices are sent.")
    address: SafeText | None = optional("Postal address, on one line; null removes it.")
    tax_id: TaxId | None = optional("Tax or VAT number; null removes it.")
    notes: SafeText | None = optional("Notes for the account's users; null removes them.")


class CustomerPublic(Schema):
    """A customer as the API shows it."""

    id: UUID
    name: str
    email: str
    address: str | None
    tax_id: str | None
    notes: str | None
    contacts: list[ContactPublic]
    created_at: datetime | None
