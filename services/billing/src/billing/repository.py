"""Billing's queries; every one that touches customer data is scoped to an account."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.models import (
    AccessGrant,
    Account,
    ApiKey,
    AppUser,
    Customer,
    Invoice,
    InvoiceLine,
    StaffMember,
)
from shared.contracts import AccessPurpose


class BillingRepository:
    """Reads and writes billing's tables inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, *rows: Any) -> None:
        """Stage new rows."""
        self.session.add_all(rows)

    async def flush(self) -> None:
        """Send staged rows so later statements see them."""
        await self.session.flush()

    async def get_account(self, account_id: UUID, *, for_update: bool = False) -> Account | None:
        """An account by id, locked for the transaction if asked."""
        return await self.session.get(Account, account_id, with_for_update=for_update)

    async def take_invoice_number(self, account_id: UUID) -> int:
        """Reserve the account's next invoice number; the row lock keeps numbering gapless."""
        result = await self.session.exec(
            update(Account)
            .where(col(Account.id) == account_id)
            .values(next_invoice_number=col(Account.next_invoice_number) + 1)
            .returning(col(Account.next_invoice_number))
        )
        return int(result.scalar_one()) - 1

    async def find_credential(
        self, key_hash: str
    ) -> tuple[ApiKey, AppUser | None, Account | None, StaffMember | None] | None:
        """An unrevoked API key by its hash, with its user and account or its staff member."""
        result = await self.session.exec(
            select(ApiKey, AppUser, Account, StaffMember)
            .outerjoin(AppUser, col(AppUser.id) == col(ApiKey.user_id))
            .outerjoin(Account, col(Account.id) == col(ApiKey.account_id))
            .outerjoin(StaffMember, col(StaffMember.id) == col(ApiKey.staff_id))
            .where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
        )
        row = result.first()
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def get_staff(self, staff_id: UUID) -> StaffMember | None:
        """A staff member by id."""
        return await self.session.get(StaffMember, staff_id)

    async def find_staff_by_email(self, email: str) -> StaffMember | None:
        """A staff member by work email."""
        return (
            await self.session.exec(select(StaffMember).where(StaffMember.email == email))
        ).first()

    async def account_owner(self, account_id: UUID) -> AppUser:
        """The account's owner."""
        result = await self.session.exec(
            select(AppUser).where(AppUser.account_id == account_id, AppUser.role == "owner")
        )
        return result.one()

    async def get_customer(self, account_id: UUID, customer_id: UUID) -> Customer | None:
        """A customer of the account."""
        result = await self.session.exec(
            select(Customer).where(Customer.account_id == account_id, Customer.id == customer_id)
        )
        return result.first()

    async def list_customers(self, account_id: UUID, *, limit: int, offset: int) -> list[Customer]:
        """The account's customers, oldest first."""
        result = await self.session.exec(
            select(Customer)
            .where(Customer.account_id == account_id)
            .order_by(col(Customer.created_at), col(Customer.id))
            .limit(limit)
            .offset(offset)
        )
        return list(result.all())

    async def get_invoice(self, account_id: UUID, invoice_id: UUID) -> Invoice | None:
        """An invoice of the account."""
        query = select(Invoice).where(Invoice.account_id == account_id, Invoice.id == invoice_id)
        return (await self.session.exec(query)).first()

    async def invoice_for_issue(
        self, account_id: UUID, invoice_id: UUID
    ) -> tuple[Invoice, Account, Customer] | None:
        """An invoice locked for issuing, with its account and customer, in one query."""
        result = await self.session.exec(
            select(Invoice, Account, Customer)
            .join(Account, col(Account.id) == col(Invoice.account_id))
            .join(Customer, col(Customer.id) == col(Invoice.customer_id))
            .where(Invoice.account_id == account_id, Invoice.id == invoice_id)
            .with_for_update(of=Invoice)
        )
        row = result.first()
        return None if row is None else (row[0], row[1], row[2])

    async def invoice_lines(self, invoice_id: UUID) -> list[InvoiceLine]:
        """An invoice's lines in order."""
        result = await self.session.exec(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice_id)
            .order_by(col(InvoiceLine.position))
        )
        return list(result.all())

    async def active_grant(
        self, *, account_id: UUID, staff_id: UUID, purpose: AccessPurpose, at: datetime
    ) -> AccessGrant | None:
        """A grant that lets the staff member read the account for the purpose now."""
        result = await self.session.exec(
            select(AccessGrant).where(
                AccessGrant.account_id == account_id,
                AccessGrant.staff_id == staff_id,
                AccessGrant.purpose == purpose,
                col(AccessGrant.revoked_at).is_(None),
                col(AccessGrant.expires_at) > at,
            )
        )
        return result.first()
