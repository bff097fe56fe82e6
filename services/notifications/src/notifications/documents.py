"""The PDFs notifications attaches, built from the events alone (never by asking billing),
laid out by shared.pdf as billing's downloads are."""

from __future__ import annotations

from decimal import Decimal

from notifications.domain import money, plain_number
from shared.contracts import (
    CreditNoteIssued,
    InvoiceIssued,
    InvoiceLine,
    IssuedInvoiceCustomer,
    StatementIssued,
    TaxTotal,
)
from shared.pdf import PrintedDocument, PrintedParty

_COLUMNS = ("#", "Description", "Quantity", "Unit price", "Discount", "Tax", "Net")
_WIDTHS = (6, 64, 16, 20, 14, 10, 20)


def _seller(name: str, address: str | None, tax_id: str | None) -> PrintedParty:
    lines = (name, address or "", f"Tax id: {tax_id}" if tax_id else "")
    return PrintedParty("From", tuple(line for line in lines if line))


def _bill_to(customer: IssuedInvoiceCustomer) -> PrintedParty:
    lines = (
        customer.name,
        customer.address or "",
        customer.email,
        f"Tax id: {customer.tax_id}" if customer.tax_id else "",
    )
    return PrintedParty("Bill to", tuple(line for line in lines if line))


def _rows(lines: list[InvoiceLine], currency: str) -> tuple[tuple[str, ...], ...]:
    def net(line: InvoiceLine) -> Decimal:
        return line.amount - line.discount_amount if line.net_amount is None else line.net_amount

    return tuple(
        (
            str(position),
            line.description,
            plain_number(line.quantity),
            plain_number(line.unit_price),
            f"{plain_number(line.discount_percent)}%" if line.discount_percent else "",
            f"{plain_number(line.tax_rate)}%",
            money(net(line), currency),
        )
        for position, line in enumerate(lines, start=1)
    )


def _totals(
    subtotal: Decimal, taxes: list[TaxTotal], total: Decimal, currency: str
) -> tuple[tuple[str, str], ...]:
    rows = [("Subtotal", money(subtotal, currency))]
    rows += [
        (
            f"Tax {plain_number(tax.rate)}% on {money(tax.taxable_amount, currency)}",
            money(tax.tax_amount, currency),
        )
        for tax in taxes
    ]
    rows.append(("Total", money(total, currency)))
    return tuple(rows)


def invoice_document(event: InvoiceIssued) -> PrintedDocument:
    """The issued invoice as printed."""
    subtotal = event.total if event.subtotal is None else event.subtotal
    return PrintedDocument(
        title=f"Invoice {event.number}",
        facts=(("Issue date", str(event.issue_date)), ("Due date", str(event.due_date))),
        parties=(
            _seller(event.seller_name, event.seller_address, event.seller_tax_id),
            _bill_to(event.customer),
        ),
        columns=_COLUMNS,
        rows=_rows(event.lines, event.currency),
        alignment="LLRRRRR",
        widths=_WIDTHS,
        totals=_totals(subtotal, event.taxes, event.total, event.currency),
    )


def credit_note_document(event: CreditNoteIssued) -> PrintedDocument:
    """The credit note as printed."""
    return PrintedDocument(
        title=f"Credit note {event.number}",
        facts=(("Issue date", str(event.issue_date)), ("Corrects invoice", event.invoice_number)),
        parties=(
            _seller(event.seller_name, event.seller_address, event.seller_tax_id),
            _bill_to(event.customer),
        ),
        columns=_COLUMNS,
        rows=_rows(event.lines, event.currency),
        alignment="LLRRRRR",
        widths=_WIDTHS,
        totals=_totals(event.subtotal, event.taxes, event.total, event.currency),
        notes=(f"Reason: {event.reason}",),
    )


def statement_document(event: StatementIssued) -> PrintedDocument:
    """The monthly statement as printed."""
    currency = event.currency
    aging = "; ".join(
        f"{bucket} {money(amount, currency)}" for bucket, amount in event.aging.items()
    )
    return PrintedDocument(
        title=f"Statement: {event.customer.name}",
        facts=(
            ("From", event.seller_name),
            ("Period", f"{event.period_start} to {event.period_end}"),
            ("Opening balance", money(event.opening_balance, currency)),
        ),
        columns=("Date", "Kind", "Number", "Reference", "Debit", "Credit", "Balance"),
        rows=tuple(
            (
                str(entry.on),
                entry.kind.replace("_", " "),
                entry.number,
                entry.reference or "",
                money(entry.debit, currency),
                money(entry.credit, currency),
                money(entry.balance, currency),
            )
            for entry in event.entries
        ),
        alignment="LLLLRRR",
        widths=(18, 18, 30, 22, 18, 18, 20),
        totals=(("Closing balance", money(event.closing_balance, currency)),),
        notes=(f"Owed at the end of the period, by days past due: {aging}.",),
    )
