"""Customers: add, list and read an account's customers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.auth.models import Principal
from billing.customers.models import Customer, CustomerChange, CustomerCreate
from billing.errors import NotFoundError
from billing.rectification.models import ChangeSubject
from billing.rectification.service import rectify
from shared.db import SessionFactory, pooled_driver
from shared.unit_of_work import UnitsOfWork


async def get_customer(
    session: AsyncSession, account_id: UUID, customer_id: UUID, *, for_update: bool = False
) -> Customer | None:
    """A customer of the account, locked for the transaction if asked."""
    query = select(Customer).where(Customer.account_id == account_id, Customer.id == customer_id)
    return (await session.exec(query.with_for_update() if for_update else query)).first()


_CUSTOMER = (
    "SELECT id, name, email, address, created_at FROM customer WHERE account_id = $1 AND id = $2"
)


class CustomerService:
    """An account's customers."""

    def __init__(
        self, *, engine: AsyncEngine, sessions: SessionFactory, units: UnitsOfWork
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.units = units

    async def create(self, *, principal: Principal, request: CustomerCreate) -> Customer:
        """Add a customer to the caller's account."""
        account_id = principal.require_user()
        customer = Customer(
            account_id=account_id,
            name=request.name,
            email=str(request.email),
            address=request.address,
        )
        async with self.units() as work:
            work.session.add(customer)
        return customer

    async def list(self, *, principal: Principal, limit: int, offset: int) -> list[Customer]:
        """The caller's customers, oldest first."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            result = await session.exec(
                select(Customer)
                .where(Customer.account_id == account_id)
                .order_by(col(Customer.created_at), col(Customer.id))
                .limit(limit)
                .offset(offset)
            )
            return list(result.all())

    async def get(self, *, principal: Principal, customer_id: UUID) -> Mapping[str, Any]:
        """One of the caller's customers, as a row: the most frequent read, in plain SQL."""
        account_id = principal.require_user()
        async with pooled_driver(self.engine) as db:
            customer: Mapping[str, Any] | None = await db.fetchrow(
                _CUSTOMER, account_id, customer_id
            )
        if customer is None:
            raise NotFoundError("no such customer in this account")
        return customer

    async def change(
        self, *, principal: Principal, customer_id: UUID, change: CustomerChange
    ) -> Customer:
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
        return customer
