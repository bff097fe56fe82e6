"""Invoices: draft, read and issue; issuing numbers the invoice and emits `invoice.issued`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Protocol
from uuid import UUID, uuid4

import asyncpg
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.mail import mail_presentation
from billing.accounts.models import Account
from billing.auth.models import Principal
from billing.customers.models import Customer
from billing.errors import ConflictError, InvalidReferenceError, NotFoundError
from billing.invoices.domain import (
    InvoiceStateError,
    InvoiceStatus,
    PricedLine,
    TaxTotal,
    Totals,
    due_date_for,
    ensure_issuable,
    ensure_voidable,
    format_invoice_number,
    invoice_totals,
    issue_date_at,
    price_line,
)
from billing.invoices.models import Invoice, InvoiceCreate, InvoiceLine, InvoiceVoid
from shared.contracts import InvoiceIssued, InvoiceVoided, IssuedInvoiceCustomer, MailPresentation
from shared.contracts import InvoiceLine as IssuedLine
from shared.contracts import TaxTotal as IssuedTaxTotal
from shared.db import SessionFactory
from shared.group_commit import GroupCommit, Submitted
from shared.unit_of_work import UnitsOfWork, Work

# The customer, and the account's currency and terms for an invoice that names neither.
_CUSTOMER = """
SELECT a.currency, a.payment_terms_days FROM customer c JOIN account a ON a.id = c.account_id
WHERE c.account_id = $1 AND c.id = $2
"""
_ACCOUNT_DEFAULTS = "SELECT currency, payment_terms_days FROM account WHERE id = $1"
# The seller locked, with the buyers: the lock, held to commit, keeps numbering gapless, and a
# correction of the account's details (which takes it too) lands before or after, never within.
_SELLER_AND_BUYERS = """
SELECT a.next_invoice_number, a.name, a.address, a.tax_id, a.time_zone, a.locale, a.logo_url,
       c.id AS customer_id,
    c.name AS customer_name, c.email AS customer_email, c.address AS customer_address,
    c.tax_id AS customer_tax_id
FROM account a LEFT JOIN customer c ON c.account_id = a.id AND c.id = ANY($2::uuid[])
WHERE a.id = $1
FOR UPDATE OF a
"""
# Invoices and all their lines in one statement (the lines' foreign key is checked at its end).
# The parties' columns, $24 on, follow PARTY_FIELDS.
_INSERT_INVOICES_WITH_LINES = """
WITH invoice_rows AS (
    INSERT INTO invoice (id, account_id, customer_id, number, status, currency, total,
        issue_date, due_date, issued_at, subtotal, tax_total, payment_terms_days,
        seller_name, seller_address, seller_tax_id, customer_name, customer_email,
        customer_address, customer_tax_id)
    SELECT id, $1, customer_id, number, status::invoicestatus, currency, total, issue_date,
        due_date, issued_at, subtotal, tax_total, payment_terms_days, seller_name,
        seller_address, seller_tax_id, customer_name, customer_email, customer_address,
        customer_tax_id
    FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::numeric[],
        $8::date[], $9::date[], $10::timestamptz[], $18::numeric[], $19::numeric[],
        $20::int[], $24::text[], $25::text[], $26::text[], $27::text[], $28::text[],
        $29::text[], $30::text[])
        AS i(id, customer_id, number, status, currency, total, issue_date, due_date, issued_at,
            subtotal, tax_total, payment_terms_days, seller_name, seller_address,
            seller_tax_id, customer_name, customer_email, customer_address, customer_tax_id)
)
INSERT INTO invoice_line (id, invoice_id, account_id, position, description, quantity,
    unit_price, amount, discount_percent, discount_amount, tax_rate)
SELECT id, invoice_id, $1, position, description, quantity, unit_price, amount,
    discount_percent, discount_amount, tax_rate
FROM unnest($11::uuid[], $12::uuid[], $13::int[], $14::text[], $15::numeric[],
    $16::numeric[], $17::numeric[], $21::numeric[], $22::numeric[], $23::numeric[])
    AS line(id, invoice_id, position, description, quantity, unit_price, amount,
        discount_percent, discount_amount, tax_rate)
"""
# The same, taking the numbers it used in the statement that writes them ($31 of them).
_INSERT_NUMBERED_INVOICES_WITH_LINES = _INSERT_INVOICES_WITH_LINES.replace(
    "WITH invoice_rows AS (",
    "WITH numbers AS (\n    UPDATE account SET next_invoice_number = next_invoice_number + $31"
    " WHERE id = $1\n), invoice_rows AS (",
    1,
)


@dataclass(frozen=True, slots=True)
class Parties:
    """Who issues an invoice, to whom, as printed: the snapshot an issued invoice keeps."""

    seller_name: str
    seller_address: str | None
    seller_tax_id: str | None
    customer_name: str
    customer_email: str
    customer_address: str | None
    customer_tax_id: str | None


PARTY_FIELDS = tuple(Parties.__dataclass_fields__)


@dataclass(slots=True)
class DraftedInvoice:
    """The invoice row the draft path writes, as plain data: a SQLModel table object costs
    SQLAlchemy's instrumentation on every attribute, and this path never needs the ORM."""

    id: UUID
    account_id: UUID
    customer_id: UUID
    currency: str
    due_date: date | None
    payment_terms_days: int | None
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    number: str | None = None
    status: InvoiceStatus = InvoiceStatus.DRAFT
    issue_date: date | None = None
    issued_at: datetime | None = None
    seller_name: str | None = None
    seller_address: str | None = None
    seller_tax_id: str | None = None
    customer_name: str | None = None
    customer_email: str | None = None
    customer_address: str | None = None
    customer_tax_id: str | None = None
    voided_at: datetime | None = None
    credited_total: Decimal = Decimal(0)
    amount_paid: Decimal = Decimal(0)
    taxes: tuple[TaxTotal, ...] | None = None  # computed when drafted, not a column


@dataclass(slots=True)
class DraftedLine:
    """An invoice line row the draft path writes, as plain data."""

    id: UUID
    position: int
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    discount_percent: Decimal
    discount_amount: Decimal
    tax_rate: Decimal


@dataclass(frozen=True)
class InvoiceWithLines:
    """An invoice (draft or issued) with its lines."""

    invoice: Invoice | DraftedInvoice
    lines: Sequence[InvoiceLine | DraftedLine]


@dataclass(frozen=True)
class Drafted:
    """A new invoice and its lines, not yet written."""

    invoice: DraftedInvoice
    lines: list[DraftedLine]


async def _insert_drafted(
    db: asyncpg.Connection, account_id: UUID, drafted: Sequence[Drafted], *, numbered: int = 0
) -> None:
    """Write invoices and all their lines in one round trip (advancing the account's invoice
    numbers past the `numbered` ones they took)."""
    invoices = [d.invoice for d in drafted]
    lines = [(d.invoice.id, line) for d in drafted for line in d.lines]
    await db.execute(
        _INSERT_NUMBERED_INVOICES_WITH_LINES if numbered else _INSERT_INVOICES_WITH_LINES,
        account_id,
        [i.id for i in invoices],
        [i.customer_id for i in invoices],
        [i.number for i in invoices],
        [i.status.name for i in invoices],
        [i.currency for i in invoices],
        [i.total for i in invoices],
        [i.issue_date for i in invoices],
        [i.due_date for i in invoices],
        [i.issued_at for i in invoices],
        [line.id for _, line in lines],
        [invoice_id for invoice_id, _ in lines],
        [line.position for _, line in lines],
        [line.description for _, line in lines],
        [line.quantity for _, line in lines],
        [line.unit_price for _, line in lines],
        [line.amount for _, line in lines],
        [i.subtotal for i in invoices],
        [i.tax_total for i in invoices],
        [i.payment_terms_days for i in invoices],
        [line.discount_percent for _, line in lines],
        [line.discount_amount for _, line in lines],
        [line.tax_rate for _, line in lines],
        *([getattr(i, name) for i in invoices] for name in PARTY_FIELDS),
        *([numbered] if numbered else []),
    )


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


def _date_issued(invoice: Invoice | DraftedInvoice, issue_date: date) -> ConflictError | None:
    """Date the invoice and, on payment terms, set its due date; or the refusal of an invoice
    due before the date it would be issued."""
    invoice.issue_date = issue_date
    if invoice.due_date is None:
        invoice.due_date = due_date_for(issue_date, invoice.payment_terms_days or 0)
    elif invoice.due_date < issue_date:
        return ConflictError("the due date is before today, the issue date", field="due_date")
    return None


def _mark_issued(
    invoice: Invoice | DraftedInvoice, *, number: int, now: datetime, parties: Parties
) -> None:
    """Number and date the invoice, and fix who issued it to whom as of now."""
    invoice.number = format_invoice_number(number)
    invoice.status = InvoiceStatus.ISSUED
    invoice.issued_at = now
    for name, value in asdict(parties).items():
        setattr(invoice, name, value)


async def _number_and_announce(
    work: Work, invoice: Invoice, lines: list[InvoiceLine], account: Account, customer: Customer
) -> None:
    """Number, date and snapshot the invoice, and emit `invoice.issued` in the same transaction."""
    # The numbering lock is taken last: from here to commit, only writes remain. A refusal
    # after it rolls the number back with everything else.
    number = await take_invoice_number(work.session, account.id)
    await work.session.refresh(account)  # the details as of the lock, as the batch path reads
    now = datetime.now(UTC)
    if refusal := _date_issued(invoice, issue_date_at(now, account.time_zone)):
        raise refusal
    _mark_issued(
        invoice,
        number=number,
        now=now,
        parties=Parties(
            seller_name=account.name,
            seller_address=account.address,
            seller_tax_id=account.tax_id,
            customer_name=customer.name,
            customer_email=customer.email,
            customer_address=customer.address,
            customer_tax_id=customer.tax_id,
        ),
    )
    work.emit(_issued_event(invoice, lines, mail_presentation(account)))


def _issued_event(
    invoice: Invoice | DraftedInvoice,
    lines: Sequence[InvoiceLine | DraftedLine],
    presentation: MailPresentation,
) -> InvoiceIssued:
    """The `invoice.issued` event, from the invoice's own snapshot."""
    assert invoice.number is not None
    assert invoice.issue_date is not None
    assert invoice.due_date is not None
    assert invoice.seller_name is not None
    return InvoiceIssued(
        account_id=invoice.account_id,
        invoice_id=invoice.id,
        number=invoice.number,
        seller_name=invoice.seller_name,
        seller_address=invoice.seller_address,
        seller_tax_id=invoice.seller_tax_id,
        customer=issued_customer(invoice),
        currency=invoice.currency,
        lines=issued_lines(lines),
        subtotal=invoice.subtotal,
        taxes=issued_taxes(taxes_of(invoice, lines)),
        tax_total=invoice.tax_total,
        total=invoice.total,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        presentation=presentation,
    )


class StoredLine(Protocol):
    """A priced line as stored: an invoice's or a credit note's."""

    amount: Decimal
    discount_amount: Decimal
    tax_rate: Decimal


class DocumentLine(StoredLine, Protocol):
    """A line as printed on an invoice or a credit note."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    discount_percent: Decimal


class Snapshot(Protocol):
    """Who a document was issued to, as printed: an invoice's or a credit note's."""

    @property
    def customer_id(self) -> UUID: ...
    @property
    def customer_name(self) -> str | None: ...
    @property
    def customer_email(self) -> str | None: ...
    @property
    def customer_address(self) -> str | None: ...
    @property
    def customer_tax_id(self) -> str | None: ...


def issued_customer(document: Snapshot) -> IssuedInvoiceCustomer:
    """The customer as a document printed them, for its event."""
    assert document.customer_name is not None
    assert document.customer_email is not None
    return IssuedInvoiceCustomer(
        customer_id=document.customer_id,
        name=document.customer_name,
        email=document.customer_email,
        address=document.customer_address,
        tax_id=document.customer_tax_id,
    )


def issued_lines(lines: Sequence[DocumentLine]) -> list[IssuedLine]:
    """A document's lines, for its event."""
    return [
        IssuedLine(
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
            discount_percent=line.discount_percent,
            discount_amount=line.discount_amount,
            net_amount=line.amount - line.discount_amount,
            tax_rate=line.tax_rate,
        )
        for line in lines
    ]


def issued_taxes(taxes: Sequence[TaxTotal]) -> list[IssuedTaxTotal]:
    """A document's tax per rate, for its event."""
    return [
        IssuedTaxTotal(rate=tax.rate, taxable_amount=tax.taxable_amount, tax_amount=tax.tax_amount)
        for tax in taxes
    ]


def totals_of_lines(lines: Sequence[StoredLine], currency: str) -> Totals:
    """The sums of lines as stored."""
    return invoice_totals(
        (
            PricedLine(
                amount=line.amount,
                discount_amount=line.discount_amount,
                net_amount=line.amount - line.discount_amount,
                tax_rate=line.tax_rate,
            )
            for line in lines
        ),
        currency,
    )


def taxes_of(
    invoice: Invoice | DraftedInvoice, lines: Sequence[InvoiceLine | DraftedLine]
) -> tuple[TaxTotal, ...]:
    """An invoice's tax per rate: as computed when drafted, or from its stored lines."""
    if isinstance(invoice, DraftedInvoice) and invoice.taxes is not None:
        return invoice.taxes
    return totals_of_lines(lines, invoice.currency).taxes


def _no_such_customer() -> InvalidReferenceError:
    return InvalidReferenceError("no such customer in this account", field="customer_id")


async def issue_in(
    work: Work, account_id: UUID, batch: Sequence[Submitted[Drafted]]
) -> list[InvoiceWithLines | Exception]:
    """Draft and issue a batch of one account's invoices in the caller's transaction.

    The seller (locked) with the customers, the invoices with all their lines and the numbers
    they took, the outbox rows: three round trips however many queued.
    """
    refused: dict[int, Exception] = {}
    db = await work.driver()
    customer_ids = list({s.item.invoice.customer_id for s in batch})
    rows = await db.fetch(_SELLER_AND_BUYERS, account_id, customer_ids)
    if not rows:
        raise NotFoundError("no such account")
    seller = rows[0]
    buyers = {row["customer_id"]: row for row in rows if row["customer_id"] is not None}
    now = datetime.now(UTC)
    issue_date = issue_date_at(now, seller["time_zone"])
    for index, submitted in enumerate(batch):
        invoice = submitted.item.invoice
        if invoice.customer_id not in buyers:
            refused[index] = _no_such_customer()
        elif refusal := _date_issued(invoice, issue_date):
            refused[index] = refusal
    accepted = [s for index, s in enumerate(batch) if index not in refused]
    presentation = MailPresentation(
        locale=seller["locale"], time_zone=seller["time_zone"], logo_url=seller["logo_url"]
    )
    for offset, submitted in enumerate(accepted):
        invoice = submitted.item.invoice
        buyer = buyers[invoice.customer_id]
        parties = Parties(
            seller_name=seller["name"],
            seller_address=seller["address"],
            seller_tax_id=seller["tax_id"],
            customer_name=buyer["customer_name"],
            customer_email=buyer["customer_email"],
            customer_address=buyer["customer_address"],
            customer_tax_id=buyer["customer_tax_id"],
        )
        number = seller["next_invoice_number"] + offset
        _mark_issued(invoice, number=number, now=now, parties=parties)
        event = _issued_event(invoice, submitted.item.lines, presentation)
        # Emitted in its request's context: its record carries that request's trace.
        submitted.context.run(work.emit, event)
    if accepted:
        await _insert_drafted(db, account_id, [s.item for s in accepted], numbered=len(accepted))
    return [
        refused.get(index) or InvoiceWithLines(s.item.invoice, s.item.lines)
        for index, s in enumerate(batch)
    ]


def drafted_from(
    account_id: UUID, request: InvoiceCreate, defaults: asyncpg.Record | None
) -> Drafted:
    """The invoice and lines a request describes, not yet written; the account's currency
    and payment terms where it names none (then `defaults` holds them)."""
    currency = request.currency or (defaults and defaults["currency"])
    assert currency is not None
    lines = []
    for index, line in enumerate(request.lines, start=1):
        priced = price_line(
            line.quantity,
            line.unit_price,
            currency,
            discount_percent=line.discount_percent,
            tax_rate=line.tax_rate,
        )
        lines.append(
            DraftedLine(
                id=uuid4(),
                position=index,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=priced.amount,
                discount_percent=line.discount_percent,
                discount_amount=priced.discount_amount,
                tax_rate=line.tax_rate,
            )
        )
    totals = totals_of_lines(lines, currency)
    terms = request.payment_terms_days
    if request.due_date is None and terms is None:
        assert defaults is not None
        terms = defaults["payment_terms_days"]
    invoice = DraftedInvoice(
        id=uuid4(),
        account_id=account_id,
        customer_id=request.customer_id,
        currency=currency,
        due_date=request.due_date,
        payment_terms_days=terms,
        subtotal=totals.subtotal,
        tax_total=totals.tax_total,
        total=totals.total,
        taxes=totals.taxes,
    )
    return Drafted(invoice, lines)


class InvoiceService:
    """An account's invoices."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units
        # Issuing serialises on the account's numbering lock: invoices of one account that
        # queue for it are numbered, written and committed together.
        self._issuing: GroupCommit[UUID, Drafted, InvoiceWithLines] = GroupCommit(self._issue_batch)

    async def draft(self, *, principal: Principal, request: InvoiceCreate) -> InvoiceWithLines:
        """Create a draft invoice for one of the caller's customers, issued at once if asked."""
        account_id = principal.require_user()
        if request.issue:
            named = request.currency and (
                request.due_date or request.payment_terms_days is not None
            )
            defaults = None if named else await self._account_defaults(account_id)
            return await self._issuing.submit(
                account_id, drafted_from(account_id, request, defaults)
            )
        # The hot path of the API, in plain SQL inside the unit of work's transaction.
        async with self.units() as work:
            db = await work.driver()
            defaults = await db.fetchrow(_CUSTOMER, account_id, request.customer_id)
            if defaults is None:
                raise _no_such_customer()
            drafted = drafted_from(account_id, request, defaults)
            await _insert_drafted(db, account_id, [drafted])
        return InvoiceWithLines(drafted.invoice, drafted.lines)

    async def _account_defaults(self, account_id: UUID) -> asyncpg.Record:
        """The currency and payment terms of the account's invoices that name none."""
        async with self.units() as work:
            defaults = await (await work.driver()).fetchrow(_ACCOUNT_DEFAULTS, account_id)
        if defaults is None:
            raise NotFoundError("no such account")
        return defaults

    async def _issue_batch(
        self, account_id: UUID, batch: Sequence[Submitted[Drafted]]
    ) -> list[InvoiceWithLines | Exception]:
        """Draft and issue a batch of one account's invoices in one transaction: BEGIN, the
        work of issue_in, COMMIT."""
        async with self.units() as work:
            return await issue_in(work, account_id, batch)

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

    async def void(
        self, *, principal: Principal, invoice_id: UUID, request: InvoiceVoid
    ) -> InvoiceWithLines:
        """Void an issued invoice: its number stays taken, it is no longer due, and
        `invoice.voided` says so in the same transaction."""
        account_id = principal.require_user()
        async with self.units() as work:
            found = await work.session.exec(
                select(Invoice)
                .where(Invoice.account_id == account_id, Invoice.id == invoice_id)
                .with_for_update()
            )
            invoice = found.first()
            if invoice is None:
                raise NotFoundError("no such invoice in this account")
            try:
                ensure_voidable(
                    invoice.status, credited=invoice.credited_total, paid=invoice.amount_paid
                )
            except InvoiceStateError as exc:
                raise ConflictError(str(exc), field="status") from exc
            assert invoice.number is not None  # an issued invoice has its number
            invoice.status = InvoiceStatus.VOID
            invoice.voided_at = datetime.now(UTC)
            invoice.void_reason = request.reason
            work.session.add(invoice)
            work.emit(
                InvoiceVoided(
                    account_id=account_id,
                    invoice_id=invoice.id,
                    number=invoice.number,
                    voided_at=invoice.voided_at,
                    reason=request.reason,
                )
            )
            lines = await invoice_lines(work.session, invoice.id)
        return InvoiceWithLines(invoice, lines)
