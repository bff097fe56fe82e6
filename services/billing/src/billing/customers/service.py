"""Customers: add, list and read an account's customers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auth.models import Principal
from billing.customers.models import (
    MAX_CONTACTS,
    ContactCreate,
    Customer,
    CustomerChange,
    CustomerContact,
    CustomerCreate,
)
from billing.errors import ConflictError, NotFoundError
from billing.rectification.models import ChangeSubject
from billing.rectification.service import record_change, rectify
from shared.db import SessionFactory, pooled_driver
from shared.unit_of_work import UnitsOfWork


async def get_customer(
    session: AsyncSession, account_id: UUID, customer_id: UUID, *, for_update: bool = False
) -> Customer | None:
    """A customer of the account, locked for the transaction if asked."""
    query = select(Customer).where(Customer.account_id == account_id, Customer.id == customer_id)
    return (await session.exec(query.with_for_update() if for_update else query)).first()


# The customer with its contacts in one round trip: the most frequent read. The contacts as
# text: the engine's connections decode json themselves, plain ones do not.
_CUSTOMER = """
SELECT c.id, c.name, c.email, c.address, c.tax_id, c.notes, c.created_at,
    COALESCE((SELECT json_agg(json_build_object('id', k.id, 'name', k.name, 'email', k.email,
            'role', k.role) ORDER BY k.name COLLATE "C", k.id)
        FROM customer_contact k WHERE k.account_id = c.account_id AND k.customer_id = c.id),
        '[]')::text AS contacts
FROM customer c WHERE c.account_id = $1 AND c.id = $2
"""


def customer_row(customer: Customer, contacts: Sequence[CustomerContact]) -> dict[str, Any]:
    """A customer with its contacts, as the API shows it."""
    return {
        **customer.model_dump(exclude={"account_id"}),
        "contacts": [
            contact.model_dump(include={"id", "name", "email", "role"})
            # As the queries order them: by code point (collation C), then id.
            for contact in sorted(contacts, key=lambda c: (c.name, str(c.id)))
        ],
    }


async def customer_with_contacts(session: AsyncSession, customer: Customer) -> dict[str, Any]:
    """A customer and its contacts, as the API shows it."""
    contacts = await _contacts_of(session, customer.account_id, [customer.id])
    return customer_row(customer, contacts[customer.id])


async def _contacts_of(
    session: AsyncSession, account_id: UUID, customer_ids: Sequence[UUID]
) -> dict[UUID, list[CustomerContact]]:
    found: dict[UUID, list[CustomerContact]] = {customer_id: [] for customer_id in customer_ids}
    if customer_ids:
        result = await session.exec(
            select(CustomerContact)
            .where(
                CustomerContact.account_id == account_id,
                col(CustomerContact.customer_id).in_(list(customer_ids)),
            )
            .order_by(col(CustomerContact.name).collate("C"), col(CustomerContact.id))
        )
        for contact in result.all():
            found[contact.customer_id].append(contact)
    return found


class CustomerService:
    """An account's customers."""

    def __init__(
        self, *, engine: AsyncEngine, sessions: SessionFactory, units: UnitsOfWork
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.units = units

    async def create(self, *, principal: Principal, request: CustomerCreate) -> dict[str, Any]:
        """Add a customer, with its contacts, to the caller's account."""
        account_id = principal.require_user()
        customer = Customer(
            account_id=account_id,
            name=request.name,
            email=str(request.email),
            address=request.address,
            tax_id=request.tax_id,
            notes=request.notes,
        )
        contacts = [
            CustomerContact(
                account_id=account_id,
                customer_id=customer.id,
                name=contact.name,
                email=str(contact.email),
                role=contact.role,
            )
            for contact in request.contacts
        ]
        async with self.units() as work:
            work.session.add(customer)
            await work.session.flush()  # the customer before its contacts (their foreign key)
            work.session.add_all(contacts)
            await work.session.flush()
            row = customer_row(customer, contacts)
        return row

    async def list(self, *, principal: Principal, limit: int, offset: int) -> list[dict[str, Any]]:
        """The caller's customers, oldest first, with their contacts."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            result = await session.exec(
                select(Customer)
                .where(Customer.account_id == account_id)
                .order_by(col(Customer.created_at), col(Customer.id))
                .limit(limit)
                .offset(offset)
            )
            customers = list(result.all())
            contacts = await _contacts_of(session, account_id, [c.id for c in customers])
            return [customer_row(c, contacts[c.id]) for c in customers]

    async def get(self, *, principal: Principal, customer_id: UUID) -> dict[str, Any]:
        """One of the caller's customers with its contacts: one query, in plain SQL."""
        account_id = principal.require_user()
        async with pooled_driver(self.engine) as db:
            found = await db.fetchrow(_CUSTOMER, account_id, customer_id)
        if found is None:
            raise NotFoundError("no such customer in this account")
        return {**found, "contacts": json.loads(found["contacts"])}

    async def add_contact(
        self, *, principal: Principal, customer_id: UUID, request: ContactCreate
    ) -> CustomerContact:
        """Add a person at one of the caller's customers."""
        account_id = principal.require_user()
        async with self.units() as work:
            customer = await get_customer(work.session, account_id, customer_id, for_update=True)
            if customer is None:
                raise NotFoundError("no such customer in this account")
            counted = await _contacts_of(work.session, account_id, [customer_id])
            if len(counted[customer_id]) >= MAX_CONTACTS:
                raise ConflictError(f"a customer has at most {MAX_CONTACTS} contacts")
            contact = CustomerContact(
                account_id=account_id,
                customer_id=customer_id,
                name=request.name,
                email=str(request.email),
                role=request.role,
            )
            work.session.add(contact)
            record_change(
                work,
                principal=principal,
                subject=ChangeSubject.CUSTOMER,
                subject_id=customer_id,
                fields=["contacts"],
            )
        return contact

    async def remove_contact(
        self, *, principal: Principal, customer_id: UUID, contact_id: UUID
    ) -> None:
        """Remove a person from one of the caller's customers."""
        account_id = principal.require_user()
        async with self.units() as work:
            removed = await work.session.exec(
                delete(CustomerContact)
                .where(
                    col(CustomerContact.account_id) == account_id,
                    col(CustomerContact.customer_id) == customer_id,
                    col(CustomerContact.id) == contact_id,
                )
                .returning(col(CustomerContact.id))
            )
            if removed.first() is None:
                raise NotFoundError("no such contact of this customer")
            record_change(
                work,
                principal=principal,
                subject=ChangeSubject.CUSTOMER,
                subject_id=customer_id,
                fields=["contacts"],
            )

    async def change(
        self, *, principal: Principal, customer_id: UUID, change: CustomerChange
    ) -> dict[str, Any]:
        """Correct a customer's details (RECTIFY); the change is recorded."""
        account_id = principal.require_user()
        async with self.units() as work:
            customer = await get_customer(work.session, account_id, customer_id, for_update=True)
            if customer is None:
                raise NotFoundError("no such customer in this account")
            await rectify(
                work,
                principal=principal,
                subject=ChangeSubject.CUSTOMER,
                row=customer,
                patch=change,
            )
            contacts = await _contacts_of(work.session, account_id, [customer_id])
            return customer_row(customer, contacts[customer_id])
