"""Billing's documents as PDF: invoices, credit notes and statements, laid out by shared.pdf
from what the API shows (amounts already at the currency's minor unit)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

from fastapi import Response

from billing.credit_notes.models import CreditNotePublic
from billing.invoices.models import (
    BillToPublic,
    InvoiceLinePublic,
    InvoicePublic,
    SellerPublic,
    TaxTotalPublic,
)
from billing.statements.models import StatementPublic
from shared.pdf import PrintedDocument, PrintedParty, render_pdf

# The OpenAPI entry of a route answering a PDF.
PDF: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
}
_LINE_COLUMNS = ("#", "Description", "Quantity", "Unit price", "Discount", "Tax", "Net")
_LINE_WIDTHS = (6, 64, 16, 20, 14, 10, 20)


def _seller(seller: SellerPublic | None) -> PrintedParty | None:
    if seller is None:
        return None
    lines = (seller.name, seller.address or "", f"Tax id: {seller.tax_id}" if seller.tax_id else "")
    return PrintedParty("From", tuple(line for line in lines if line))


def _bill_to(bill_to: BillToPublic | None) -> PrintedParty | None:
    if bill_to is None:
        return None
    lines = (
        bill_to.name,
        bill_to.address or "",
        bill_to.email,
        f"Tax id: {bill_to.tax_id}" if bill_to.tax_id else "",
    )
    return PrintedParty("Bill to", tuple(line for line in lines if line))


def _lines(lines: Sequence[InvoiceLinePublic]) -> tuple[tuple[str, ...], ...]:
    return tuple(
        (
            str(line.position),
            line.description,
            str(line.quantity),
            str(line.unit_price),
            f"{line.discount_percent}%" if line.discount_percent else "",
            f"{line.tax_rate}%",
            str(line.net_amount),
        )
        for line in lines
    )


def _totals(
    subtotal: Decimal, taxes: Sequence[TaxTotalPublic], total: Decimal, currency: str
) -> list[tuple[str, str]]:
    rows = [("Subtotal", str(subtotal))]
    rows += [(f"Tax {tax.rate}% on {tax.taxable_amount}", str(tax.tax_amount)) for tax in taxes]
    rows.append((f"Total {currency}", str(total)))
    return rows


def invoice_document(invoice: InvoicePublic) -> PrintedDocument:
    """An invoice as printed: a draft says so."""
    title = f"Invoice {invoice.number}" if invoice.number else "Draft invoice (not issued)"
    if invoice.status == "void":
        title += " (void)"
    dates = (("Issue date", invoice.issue_date), ("Due date", invoice.due_date))
    facts = [(label, str(value)) for label, value in dates if value is not None]
    parties = tuple(p for p in (_seller(invoice.seller), _bill_to(invoice.bill_to)) if p)
    totals = _totals(invoice.subtotal, invoice.taxes, invoice.total, invoice.currency)
    if invoice.credited_total:
        totals.append(("Credited", str(invoice.credited_total)))
    if invoice.amount_paid:
        totals.append(("Paid", str(invoice.amount_paid)))
    if invoice.amount_due is not None:
        totals.append((f"Amount due {invoice.currency}", str(invoice.amount_due)))
    return PrintedDocument(
        title=title,
        facts=tuple(facts),
        parties=parties,
        columns=_LINE_COLUMNS,
        rows=_lines(invoice.lines),
        alignment="LLRRRRR",
        widths=_LINE_WIDTHS,
        totals=tuple(totals),
    )


def credit_note_document(
    note: CreditNotePublic,
    *,
    invoice_number: str,
    seller: SellerPublic | None,
    bill_to: BillToPublic | None,
) -> PrintedDocument:
    """A credit note as printed, naming the invoice it corrects."""
    return PrintedDocument(
        title=f"Credit note {note.number}",
        facts=(("Issue date", str(note.issue_date)), ("Corrects invoice", invoice_number)),
        parties=tuple(p for p in (_seller(seller), _bill_to(bill_to)) if p),
        columns=_LINE_COLUMNS,
        rows=_lines(note.lines),
        alignment="LLRRRRR",
        widths=_LINE_WIDTHS,
        totals=tuple(_totals(note.subtotal, note.taxes, note.total, note.currency)),
        notes=(f"Reason: {note.reason}",),
    )


def statement_document(statement: StatementPublic) -> PrintedDocument:
    """A statement as printed: entries with running balances, then aging."""
    aging = statement.aging
    return PrintedDocument(
        title=f"Statement: {statement.customer_name}",
        facts=(
            ("Period", f"{statement.period_start} to {statement.period_end}"),
            ("Currency", statement.currency),
            ("Opening balance", str(statement.opening_balance)),
        ),
        columns=("Date", "Kind", "Number", "Reference", "Debit", "Credit", "Balance"),
        rows=tuple(
            (
                str(entry.date),
                entry.kind.value.replace("_", " "),
                entry.number,
                entry.reference or "",
                str(entry.debit),
                str(entry.credit),
                str(entry.balance),
            )
            for entry in statement.entries
        ),
        alignment="LLLLRRR",
        widths=(18, 18, 30, 22, 18, 18, 20),
        totals=(
            ("Invoiced in the period", str(statement.invoiced)),
            ("Credited and paid in the period", str(statement.credited)),
            (f"Closing balance {statement.currency}", str(statement.closing_balance)),
        ),
        notes=(
            f"Aging on {statement.period_end}: current {aging.current}; 1-30 days "
            f"{aging.days_1_30}; 31-60 days {aging.days_31_60}; 61-90 days {aging.days_61_90}; "
            f"over 90 days {aging.over_90}.",
        ),
    )


async def pdf_response(document: PrintedDocument, filename: str) -> Response:
    """The document as a PDF download; laid out off the event loop (it takes CPU)."""
    content = await asyncio.to_thread(render_pdf, document)
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
