"""Credit notes: credit an issued invoice, numbered in their own series; read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlalchemy import func, update
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
    issue_date_at,
    plain_decimal,
    price_line,
    tax_on,
)
from billing.invoices.models import Invoice, InvoiceLine
from billing.invoices.service import invoice_lines, issued_customer, issued_lines, issued_taxes
from billing.payments.service import credit_invoice, lock_customer
from shared.contracts import CreditNoteIssued, MailPresentation
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork


@dataclass(frozen=True)
class CreditNoteWithLines:
    """A credit note with its lines."""

    credit_note: CreditNote
    lines: Sequence[CreditNoteLine]


@dataclass(frozen=True)
class _Credit:
    """One invoice line's part in a credit note, priced as the difference it makes to what is
    credited of that line, so successive credits add up to the invoice to the cent."""

    line: InvoiceLine
    quantity: Decimal
    amount: Decimal
    discount_amount: Decimal

    @property
    def net_amount(self) -> Decimal:
        return self.amount - self.discount_amount


def _priced(line: InvoiceLine, quantity: Decimal, currency: str) -> PricedLine:
    return price_line(
        quantity,
        line.unit_price,
        currency,
        discount_percent=line.discount_percent,
        tax_rate=line.tax_rate,
    )


def _credit(line: InvoiceLine, before: Decimal, quantity: Decimal, currency: str) -> _Credit:
    """What crediting `quantity` more of a line, `before` of it credited, amounts to."""
    was, will = _priced(line, before, currency), _priced(line, before + quantity, currency)
    return _Credit(
        line,
        quantity,
        amount=will.amount - was.amount,
        discount_amount=will.discount_amount - was.discount_amount,
    )


def _taxes(
    credits: Sequence[_Credit], earlier: Sequence[CreditNote], currency: str
) -> tuple[TaxTotal, ...]:
    """Each rate's tax credited now: the tax on everything credited at that rate so far, less
    what earlier credit notes credited; all of an invoice credited is all of its tax."""
    taxable: dict[Decimal, Decimal] = {}
    for credit in credits:
        rate = plain_decimal(credit.line.tax_rate)
        taxable[rate] = taxable.get(rate, Decimal(0)) + credit.net_amount
    before_taxable: dict[Decimal, Decimal] = {}
    before_tax: dict[Decimal, Decimal] = {}
    for note in earlier:
        for tax in note.taxes:
            rate = plain_decimal(Decimal(tax["rate"]))
            before_taxable[rate] = before_taxable.get(rate, Decimal(0)) + Decimal(
                tax["taxable_amount"]
            )
            before_tax[rate] = before_tax.get(rate, Decimal(0)) + Decimal(tax["tax_amount"])
    return tuple(
        TaxTotal(
            rate=rate,
            taxable_amount=base,
            tax_amount=tax_on(before_taxable.get(rate, Decimal(0)) + base, rate, currency)
            - before_tax.get(rate, Decimal(0)),
        )
        for rate, base in sorted(taxable.items())
        if rate
    )


async def _credited_quantities(
    session: AsyncSession, note_ids: Sequence[UUID]
) -> dict[UUID, Decimal]:
    """How much of each invoice line these credit notes credited."""
    if not note_ids:
        return {}
    found = await session.exec(
        select(CreditNoteLine.invoice_line_id, func.sum(CreditNoteLine.quantity))
        .where(col(CreditNoteLine.credit_note_id).in_(list(note_ids)))
        .group_by(col(CreditNoteLine.invoice_line_id))
    )
    return {line_id: Decimal(quantity) for line_id, quantity in found.all()}


def _credits(
    request: CreditNoteCreate,
    lines: dict[int, InvoiceLine],
    credited_before: dict[UUID, Decimal],
    currency: str,
) -> list[_Credit]:
    """What the request credits, each line checked against what is left of it."""

    def left(line: InvoiceLine) -> Decimal:
        return line.quantity - credited_before.get(line.id, Decimal(0))

    if request.lines is None:
        credits = [
            _credit(line, credited_before.get(line.id, Decimal(0)), left(line), currency)
            for _, line in sorted(lines.items())
            if left(line) > 0
        ]
        if not credits:
            raise ConflictError("everything on this invoice is credited already", field="lines")
        return credits
    credits = []
    for index, wanted in enumerate(request.lines):
        line = lines.get(wanted.position)
        if line is None:
            raise InvalidReferenceError(
                "the invoice has no line at this position", field=f"lines.{index}.position"
            )
        if wanted.quantity > left(line):
            raise InvalidReferenceError(
                f"at most {plain_decimal(left(line))} of this line is left to credit",
                field=f"lines.{index}.quantity",
            )
        credits.append(
            _credit(line, credited_before.get(line.id, Decimal(0)), wanted.quantity, currency)
        )
    return credits


class CreditNoteService:
    """An account's credit notes."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def issue(
        self, *, principal: Principal, request: CreditNoteCreate
    ) -> CreditNoteWithLines:
        """Credit part or all of what is left of an issued invoice, and emit
        `credit_note.issued` in the same transaction."""
        account_id = principal.require_user()
        async with self.units() as work:
            found = await work.session.exec(
                select(Invoice)
                .where(Invoice.account_id == account_id, Invoice.id == request.invoice_id)
                .with_for_update()  # one credit at a time per invoice
            )
            invoice = found.first()
            if invoice is None:
                raise InvalidReferenceError("no such invoice in this account", field="invoice_id")
            try:
                ensure_creditable(invoice.status)
            except InvoiceStateError as exc:
                raise ConflictError(str(exc), field="invoice_id") from exc
            if invoice.amount_paid > 0:  # what is paid may become the customer's credit
                await lock_customer(work.session, account_id, invoice.customer_id)
            earlier = list(
                (
                    await work.session.exec(
                        select(CreditNote).where(
                            CreditNote.account_id == account_id,
                            CreditNote.invoice_id == invoice.id,
                        )
                    )
                ).all()
            )
            credited_before = await _credited_quantities(work.session, [n.id for n in earlier])
            lines = {line.position: line for line in await invoice_lines(work.session, invoice.id)}
            credits = _credits(request, lines, credited_before, invoice.currency)
            taxes = _taxes(credits, earlier, invoice.currency)
            subtotal = sum((credit.net_amount for credit in credits), Decimal(0))
            tax_total = sum((tax.tax_amount for tax in taxes), Decimal(0))
            total = subtotal + tax_total
            if total <= 0:
                raise InvalidReferenceError("a credit note credits more than 0", field="lines")
            # By construction never more than is left; the check guards the construction.
            assert total <= invoice.total - invoice.credited_total
            # The numbering lock, taken last: from here to commit only writes remain.
            taken = await work.session.exec(
                update(Account)
                .where(col(Account.id) == account_id)
                .values(next_credit_note_number=col(Account.next_credit_note_number) + 1)
                .returning(
                    col(Account.next_credit_note_number),
                    col(Account.time_zone),
                    col(Account.locale),
                    col(Account.logo_url),
                )
            )
            next_number, time_zone, locale, logo_url = taken.one()
            presentation = MailPresentation(locale=locale, time_zone=time_zone, logo_url=logo_url)
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
                subtotal=subtotal,
                tax_total=tax_total,
                total=total,
                taxes=[
                    {
                        "rate": str(tax.rate),
                        "taxable_amount": str(tax.taxable_amount),
                        "tax_amount": str(tax.tax_amount),
                    }
                    for tax in taxes
                ],
                issue_date=issue_date_at(now, time_zone),
                issued_at=now,
                seller_name=invoice.seller_name,
                seller_address=invoice.seller_address,
                seller_tax_id=invoice.seller_tax_id,
                customer_name=invoice.customer_name,
                customer_email=invoice.customer_email,
                customer_address=invoice.customer_address,
                customer_tax_id=invoice.customer_tax_id,
            )
            note_lines = [
                CreditNoteLine(
                    credit_note_id=note.id,
                    account_id=account_id,
                    invoice_line_id=credit.line.id,
                    invoice_line_position=credit.line.position,
                    position=position,
                    description=credit.line.description,
                    quantity=credit.quantity,
                    unit_price=credit.line.unit_price,
                    amount=credit.amount,
                    discount_percent=credit.line.discount_percent,
                    discount_amount=credit.discount_amount,
                    tax_rate=credit.line.tax_rate,
                )
                for position, credit in enumerate(credits, start=1)
            ]
            work.session.add(note)
            await work.session.flush()  # the note before its lines (their foreign key)
            await credit_invoice(work, invoice, total, note.id)
            work.session.add_all([invoice, *note_lines])
            work.emit(_issued_event(note, invoice.number, note_lines, taxes, presentation))
        return CreditNoteWithLines(note, note_lines)

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


def credit_note_taxes(note: CreditNote) -> tuple[TaxTotal, ...]:
    """A credit note's tax per rate, as credited."""
    return tuple(
        TaxTotal(
            rate=Decimal(tax["rate"]),
            taxable_amount=Decimal(tax["taxable_amount"]),
            tax_amount=Decimal(tax["tax_amount"]),
        )
        for tax in note.taxes
    )


def _issued_event(
    note: CreditNote,
    invoice_number: str,
    lines: Sequence[CreditNoteLine],
    taxes: Sequence[TaxTotal],
    presentation: MailPresentation,
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
        customer=issued_customer(note),
        currency=note.currency,
        lines=issued_lines(lines),
        subtotal=note.subtotal,
        taxes=issued_taxes(taxes),
        tax_total=note.tax_total,
        total=note.total,
        issue_date=note.issue_date,
        presentation=presentation,
    )
