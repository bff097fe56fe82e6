"""Credit notes: credit an issued invoice, numbered in their own series; read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.models import Account
from billing.auth.models import Principal
from billing.credit_notes.models import CreditNote, CreditNoteCreate, CreditNoteLine
from billing.errors import ConflictError, InvalidReferenceError, NotFoundError
from billing.invoices.domain import (
    InvoiceStateError,
    PricedLine,
    TaxTotal,
    ensure_creditable,
    format_credit_note_number,
    invoice_totals,
    issue_date_at,
    price_line,
)
from billing.invoices.models import Invoice, InvoiceLineCreate
from billing.invoices.service import invoice_lines, totals_of_lines
from shared.contracts import CreditNoteIssued, IssuedInvoiceCustomer
from shared.contracts import InvoiceLine as IssuedLine
from shared.contracts import TaxTotal as IssuedTaxTotal
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork


@dataclass(frozen=True)
class CreditNoteWithLines:
    """A credit note with its lines."""

    credit_note: CreditNote
    lines: Sequence[CreditNoteLine]


def _credited_lines(
    request: CreditNoteCreate, invoice: Invoice, invoiced: Sequence[InvoiceLineCreate]
) -> list[InvoiceLineCreate]:
    """What the request credits: its lines, or the whole invoice's when it names none."""
    if request.lines is not None:
        return request.lines
    if invoice.credited_total:
        raise ConflictError(
            "part of this invoice is credited already: name the lines to credit", field="lines"
        )
    return list(invoiced)


class CreditNoteService:
    """An account's credit notes."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def issue(
        self, *, principal: Principal, invoice_id: UUID, request: CreditNoteCreate
    ) -> CreditNoteWithLines:
        """Credit an issued invoice, at most what is left of it, and emit
        `credit_note.issued` in the same transaction."""
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
                ensure_creditable(invoice.status)
            except InvoiceStateError as exc:
                raise ConflictError(str(exc), field="status") from exc
            invoiced = [
                InvoiceLineCreate(
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    discount_percent=line.discount_percent,
                    tax_rate=line.tax_rate,
                )
                for line in await invoice_lines(work.session, invoice.id)
            ]
            credited = _credited_lines(request, invoice, invoiced)
            priced = [
                price_line(
                    line.quantity,
                    line.unit_price,
                    invoice.currency,
                    discount_percent=line.discount_percent,
                    tax_rate=line.tax_rate,
                )
                for line in credited
            ]
            totals = invoice_totals(priced, invoice.currency)
            left = invoice.total - invoice.credited_total
            if totals.total <= 0:
                raise InvalidReferenceError("a credit note credits more than 0", field="lines")
            if totals.total > left:
                raise InvalidReferenceError(
                    f"this credits {totals.total} but only {left} of the invoice is left to credit",
                    field="lines",
                )
            # The numbering lock, taken last: from here to commit only writes remain.
            taken = await work.session.exec(
                update(Account)
                .where(col(Account.id) == account_id)
                .values(next_credit_note_number=col(Account.next_credit_note_number) + 1)
                .returning(col(Account.next_credit_note_number), col(Account.time_zone))
            )
            next_number, time_zone = taken.one()
            now = datetime.now(UTC)
            assert invoice.number is not None
            assert invoice.seller_name is not None
            assert invoice.customer_name is not None
            assert invoice.customer_email is not None
            note = CreditNote(
                id=uuid4(),
                account_id=account_id,
                invoice_id=invoice.id,
                customer_id=invoice.customer_id,
                number=format_credit_note_number(next_number - 1),
                currency=invoice.currency,
                reason=request.reason,
                subtotal=totals.subtotal,
                tax_total=totals.tax_total,
                total=totals.total,
                issue_date=issue_date_at(now, time_zone),
                issued_at=now,
                seller_name=invoice.seller_name,
                seller_address=invoice.seller_address,
                seller_tax_id=invoice.seller_tax_id,
                customer_name=invoice.customer_name,
                customer_email=invoice.customer_email,
                customer_address=invoice.customer_address,
            )
            lines = [
                CreditNoteLine(
                    credit_note_id=note.id,
                    account_id=account_id,
                    position=position,
                    description=line.description,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    amount=money.amount,
                    discount_percent=line.discount_percent,
                    discount_amount=money.discount_amount,
                    tax_rate=line.tax_rate,
                )
                for position, (line, money) in enumerate(zip(credited, priced, strict=True), 1)
            ]
            invoice.credited_total = invoice.credited_total + totals.total
            work.session.add(note)
            await work.session.flush()  # the note before its lines (their foreign key)
            work.session.add_all([invoice, *lines])
            work.emit(_issued_event(note, invoice.number, priced, lines, totals.taxes))
        return CreditNoteWithLines(note, lines)

    async def get(self, *, principal: Principal, credit_note_id: UUID) -> CreditNoteWithLines:
        """One of the caller's credit notes with its lines."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            found = await session.exec(
                select(CreditNote).where(
                    CreditNote.account_id == account_id, CreditNote.id == credit_note_id
                )
            )
            note = found.first()
            if note is None:
                raise NotFoundError("no such credit note in this account")
            return CreditNoteWithLines(note, await _lines(session, [note.id]))

    async def list(
        self, *, principal: Principal, invoice_id: UUID | None, limit: int, offset: int
    ) -> list[CreditNoteWithLines]:
        """The caller's credit notes, newest first, with their lines."""
        account_id = principal.require_user()
        query = select(CreditNote).where(CreditNote.account_id == account_id)
        if invoice_id is not None:
            query = query.where(CreditNote.invoice_id == invoice_id)
        query = query.order_by(col(CreditNote.issued_at).desc(), col(CreditNote.id))
        async with self.sessions() as session:
            notes = list((await session.exec(query.limit(limit).offset(offset))).all())
            lines = await _lines(session, [note.id for note in notes])
        by_note: dict[UUID, list[CreditNoteLine]] = {note.id: [] for note in notes}
        for line in lines:
            by_note[line.credit_note_id].append(line)
        return [CreditNoteWithLines(note, by_note[note.id]) for note in notes]


async def _lines(session: AsyncSession, note_ids: list[UUID]) -> list[CreditNoteLine]:
    if not note_ids:
        return []
    result = await session.exec(
        select(CreditNoteLine)
        .where(col(CreditNoteLine.credit_note_id).in_(note_ids))
        .order_by(col(CreditNoteLine.credit_note_id), col(CreditNoteLine.position))
    )
    return list(result.all())


def credit_note_taxes(note: CreditNote, lines: Sequence[CreditNoteLine]) -> tuple[TaxTotal, ...]:
    """A credit note's tax per rate, from its lines."""
    return totals_of_lines(lines, note.currency).taxes


def _issued_event(
    note: CreditNote,
    invoice_number: str,
    priced: Sequence[PricedLine],
    lines: Sequence[CreditNoteLine],
    taxes: Sequence[TaxTotal],
) -> CreditNoteIssued:
    return CreditNoteIssued(
        account_id=note.account_id,
        credit_note_id=note.id,
        number=note.number,
        invoice_id=note.invoice_id,
        invoice_number=invoice_number,
        reason=note.reason,
        seller_name=note.seller_name,
        seller_address=note.seller_address,
        seller_tax_id=note.seller_tax_id,
        customer=IssuedInvoiceCustomer(
            customer_id=note.customer_id,
            name=note.customer_name,
            email=note.customer_email,
            address=note.customer_address,
        ),
        currency=note.currency,
        lines=[
            IssuedLine(
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=money.amount,
                discount_percent=line.discount_percent,
                discount_amount=money.discount_amount,
                net_amount=money.net_amount,
                tax_rate=line.tax_rate,
            )
            for line, money in zip(lines, priced, strict=True)
        ],
        subtotal=note.subtotal,
        taxes=[
            IssuedTaxTotal(rate=t.rate, taxable_amount=t.taxable_amount, tax_amount=t.tax_amount)
            for t in taxes
        ],
        tax_total=note.tax_total,
        total=note.total,
        issue_date=note.issue_date,
    )
