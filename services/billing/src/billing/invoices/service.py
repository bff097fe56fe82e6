"""Invoices: draft, read and issue; issuing numbers the invoice and emits `invoice.issued`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.models import Account
from billing.auth.models import Principal
from billing.customers.models import Customer
from billing.customers.service import get_customer
from billing.errors import ConflictError, InvalidReferenceError, NotFoundError
from billing.invoices.domain import (
    InvoiceStateError,
    InvoiceStatus,
    ensure_issuable,
    format_invoice_number,
    invoice_total,
    line_amount,
)
from billing.invoices.models import Invoice, InvoiceCreate, InvoiceLine
from shared.contracts import InvoiceIssued, IssuedInvoiceCustomer
from shared.contracts import InvoiceLine as IssuedLine
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork, Work


@dataclass(frozen=True)
class InvoiceWithLines:
    """An invoice (draft or issued) with its lines."""

    invoice: Invoice
    lines: list[InvoiceLine]


async def take_invoice_number(session: AsyncSession, account_id: UUID) -> int:
    """Reserve the account's next invoice number; the row lock keeps numbering gapless."""
    result = await session.exec(
        update(Account)
        .where(col(Account.id) == account_id)
        .values(next_invoice_number=col(Account.next_invoice_number) + 1)
        .returning(col(Account.next_invoice_number))
    )
    return int(result.scalar_one()) - 1


async def invoice_lines(session: AsyncSession, invoice_id: UUID) -> list[InvoiceLine]:
    """An invoice's lines in order."""
    result = await session.exec(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice_id)
        .order_by(col(InvoiceLine.position))
    )
    return list(result.all())


async def invoice_for_issue(
    session: AsyncSession, account_id: UUID, invoice_id: UUID
) -> tuple[Invoice, Account, Customer] | None:
    """An invoice locked for issuing, with its account and customer, in one query."""
    result = await session.exec(
        select(Invoice, Account, Customer)
        .join(Account, col(Account.id) == col(Invoice.account_id))
        .join(Customer, col(Customer.id) == col(Invoice.customer_id))
        .where(Invoice.account_id == account_id, Invoice.id == invoice_id)
        .with_for_update(of=Invoice)
    )
    row = result.first()
    return None if row is None else (row[0], row[1], row[2])


async def _number_and_announce(
    work: Work, invoice: Invoice, lines: list[InvoiceLine], account: Account, customer: Customer
) -> None:
    """Number and date the invoice, and emit `invoice.issued` in the same transaction."""
    # The numbering lock is taken last: from here to commit, only writes remain.
    number = await take_invoice_number(work.session, account.id)
    invoice.number = format_invoice_number(number)
    invoice.status = InvoiceStatus.ISSUED
    invoice.issue_date = datetime.now(UTC).date()
    invoice.issued_at = datetime.now(UTC)
    if invoice.due_date < invoice.issue_date:
        raise ConflictError("the due date is before today, the issue date", field="due_date")
    work.emit(
        InvoiceIssued(
            account_id=account.id,
            invoice_id=invoice.id,
            number=invoice.number,
            seller_name=account.name,
            customer=IssuedInvoiceCustomer(
                customer_id=customer.id, name=customer.name, email=customer.email
            ),
            currency=invoice.currency,
            lines=[
                IssuedLine(
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    amount=line.amount,
                )
                for line in lines
            ],
            total=invoice.total,
            issue_date=invoice.issue_date,
            due_date=invoice.due_date,
        ),
    )


class InvoiceService:
    """An account's invoices."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def draft(self, *, principal: Principal, request: InvoiceCreate) -> InvoiceWithLines:
        """Create a draft invoice for one of the caller's customers."""
        account_id = principal.require_user()
        invoice_id = uuid4()
        lines = [
            InvoiceLine(
                invoice_id=invoice_id,
                account_id=account_id,
                position=index,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line_amount(line.quantity, line.unit_price, request.currency),
            )
            for index, line in enumerate(request.lines, start=1)
        ]
        invoice = Invoice(
            id=invoice_id,
            account_id=account_id,
            customer_id=request.customer_id,
            currency=request.currency,
            due_date=request.due_date,
            total=invoice_total([line.amount for line in lines]),
        )
        async with self.units() as work:
            customer = await get_customer(work.session, account_id, request.customer_id)
            if customer is None:
                raise InvalidReferenceError("no such customer in this account", field="customer_id")
            if request.issue:
                account = await work.session.get(Account, account_id)
                assert account is not None
                await _number_and_announce(work, invoice, lines, account, customer)
            work.session.add_all([invoice, *lines])  # inserted in foreign-key order
        return InvoiceWithLines(invoice, lines)

    async def get(self, *, principal: Principal, invoice_id: UUID) -> InvoiceWithLines:
        """One of the caller's invoices with its lines."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            query = select(Invoice).where(
                Invoice.account_id == account_id, Invoice.id == invoice_id
            )
            invoice = (await session.exec(query)).first()
            if invoice is None:
                raise NotFoundError("no such invoice in this account")
            return InvoiceWithLines(invoice, await invoice_lines(session, invoice_id))

    async def list(
        self,
        *,
        principal: Principal,
        status: InvoiceStatus | None,
        customer_id: UUID | None,
        limit: int,
        offset: int,
    ) -> list[InvoiceWithLines]:
        """The caller's invoices, newest first, with their lines (two queries a page)."""
        account_id = principal.require_user()
        query = select(Invoice).where(Invoice.account_id == account_id)
        if status is not None:
            query = query.where(Invoice.status == status)
        if customer_id is not None:
            query = query.where(Invoice.customer_id == customer_id)
        query = query.order_by(col(Invoice.created_at).desc(), col(Invoice.id)).limit(limit)
        async with self.sessions() as session:
            invoices = list((await session.exec(query.offset(offset))).all())
            lines: dict[UUID, list[InvoiceLine]] = {invoice.id: [] for invoice in invoices}
            if invoices:
                result = await session.exec(
                    select(InvoiceLine)
                    .where(col(InvoiceLine.invoice_id).in_(list(lines)))
                    .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.position))
                )
                for line in result.all():
                    lines[line.invoice_id].append(line)
        return [InvoiceWithLines(invoice, lines[invoice.id]) for invoice in invoices]

    async def issue(self, *, principal: Principal, invoice_id: UUID) -> InvoiceWithLines:
        """Number a draft, fix its issue date, and emit `invoice.issued` with it."""
        account_id = principal.require_user()
        async with self.units() as work:
            found = await invoice_for_issue(work.session, account_id, invoice_id)
            if found is None:
                raise NotFoundError("no such invoice in this account")
            invoice, account, customer = found
            try:
                ensure_issuable(invoice.status)
            except InvoiceStateError as exc:
                raise ConflictError(str(exc), field="status") from exc
            lines = await invoice_lines(work.session, invoice.id)
            await _number_and_announce(work, invoice, lines, account, customer)
            work.session.add(invoice)
        return InvoiceWithLines(invoice, lines)
