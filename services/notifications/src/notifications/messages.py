"""Each kind of message composed from what caused it: pure functions of the event (or the
reminder's state), the account's look and the renderer; no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from notifications.rendering import RenderedEmail, Renderer
from shared.contracts import (
    AccountPurged,
    CreditNoteIssued,
    DetailsChanged,
    ExportAssembled,
    InvoiceIssued,
    InvoiceLine,
    MailPresentation,
    NewDeviceSignedIn,
    PaymentReceived,
    StatementIssued,
    UserInvited,
)

# What a details-changed notice calls each kind of corrected details (catalog phrases).
CHANGED_SUBJECTS = {"account": "the company's details", "user": "your user details"}


@dataclass(frozen=True)
class Look:
    """Whose mail it is and how it reads."""

    presentation: MailPresentation
    account_name: str


@dataclass(frozen=True)
class Reminder:
    """What a payment reminder says."""

    customer_name: str
    number: str
    currency: str
    amount_due: Decimal
    due_date: date
    today: date


def _lines(lines: list[InvoiceLine], currency: str) -> dict[str, Any]:
    """An invoice's or credit note's lines as the templates print them."""
    return {
        "currency": currency,
        "lines": [
            {
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "discount_percent": line.discount_percent,
                "tax_rate": line.tax_rate,
                "net": line.amount - line.discount_amount
                if line.net_amount is None
                else line.net_amount,
            }
            for line in lines
        ],
    }


def invoice_message(renderer: Renderer, look: Look, invoice: InvoiceIssued) -> RenderedEmail:
    """The issued invoice (its PDF is attached by the caller)."""
    return renderer.render(
        "invoice",
        look.presentation,
        account_name=look.account_name,
        subject={"number": invoice.number, "seller": invoice.seller_name},
        context={
            **_lines(invoice.lines, invoice.currency),
            "customer": invoice.customer,
            "seller_name": invoice.seller_name,
            "seller_address": invoice.seller_address,
            "seller_tax_id": invoice.seller_tax_id,
            "number": invoice.number,
            "issue_date": invoice.issue_date,
            "due_date": invoice.due_date,
            "subtotal": invoice.total if invoice.subtotal is None else invoice.subtotal,
            "taxes": invoice.taxes,
            "total": invoice.total,
            "total_label": renderer.phrase(look.presentation, "Total"),
        },
    )


def credit_note_message(renderer: Renderer, look: Look, note: CreditNoteIssued) -> RenderedEmail:
    """The credit note (its PDF is attached by the caller)."""
    return renderer.render(
        "credit-note",
        look.presentation,
        account_name=look.account_name,
        subject={"number": note.number, "seller": note.seller_name},
        context={
            **_lines(note.lines, note.currency),
            "customer": note.customer,
            "seller_name": note.seller_name,
            "number": note.number,
            "invoice_number": note.invoice_number,
            "issue_date": note.issue_date,
            "reason": note.reason,
            "subtotal": note.subtotal,
            "taxes": note.taxes,
            "total": note.total,
            "total_label": renderer.phrase(look.presentation, "Total credited"),
        },
    )


def statement_message(renderer: Renderer, look: Look, statement: StatementIssued) -> RenderedEmail:
    """The monthly statement (its PDF is attached by the caller)."""
    formats = renderer.formats(look.presentation)
    return renderer.render(
        "statement",
        look.presentation,
        account_name=look.account_name,
        subject={
            "seller": statement.seller_name,
            "start": formats.date(statement.period_start),
            "end": formats.date(statement.period_end),
        },
        context={
            "customer": statement.customer,
            "seller_name": statement.seller_name,
            "currency": statement.currency,
            "period_start": statement.period_start,
            "period_end": statement.period_end,
            "opening_balance": statement.opening_balance,
            "entries": statement.entries,
            "closing_balance": statement.closing_balance,
        },
    )


def receipt_message(renderer: Renderer, look: Look, payment: PaymentReceived) -> RenderedEmail:
    """The receipt of a payment."""
    return renderer.render(
        "payment-receipt",
        look.presentation,
        account_name=look.account_name,
        subject={"number": payment.invoice_number},
        context={
            "customer": payment.customer,
            "invoice_number": payment.invoice_number,
            "currency": payment.currency,
            "amount": payment.amount,
            "amount_due": payment.amount_due,
            "credit_amount": payment.credit_amount,
            "received_at": payment.received_at,
        },
    )


def reminder_message(renderer: Renderer, look: Look, reminder: Reminder) -> RenderedEmail:
    """A payment reminder: before, on or after the due date."""
    return renderer.render(
        "payment-reminder",
        look.presentation,
        account_name=look.account_name,
        subject={"number": reminder.number, "seller": look.account_name},
        context={
            "customer_name": reminder.customer_name,
            "number": reminder.number,
            "currency": reminder.currency,
            "amount_due": reminder.amount_due,
            "due_date": reminder.due_date,
            "days_overdue": (reminder.today - reminder.due_date).days,
        },
    )


def invitation_message(
    renderer: Renderer, look: Look, invited: UserInvited, accept_url: str
) -> RenderedEmail:
    """An invitation to join the account's users."""
    return renderer.render(
        "invitation",
        look.presentation,
        account_name=look.account_name,
        subject={"inviter": invited.inviter_name, "account": invited.account_name},
        context={
            "name": invited.name,
            "inviter_name": invited.inviter_name,
            "role": invited.role.replace("_", "-"),
            "accept_url": accept_url,
            "token": invited.token,
            "expires_at": invited.expires_at,
        },
    )


def new_device_message(
    renderer: Renderer, look: Look, signed_in: NewDeviceSignedIn
) -> RenderedEmail:
    """The security notice of a sign-in from a new device."""
    return renderer.render(
        "new-device",
        look.presentation,
        account_name=look.account_name,
        subject={},
        context={
            "name": signed_in.name,
            "browser": signed_in.browser,
            "operating_system": signed_in.operating_system,
            "address": signed_in.address,
            "location": signed_in.location,
            "signed_in_at": signed_in.signed_in_at,
        },
    )


def details_changed_message(
    renderer: Renderer, look: Look, change: DetailsChanged
) -> RenderedEmail:
    """The notice that details were corrected: which fields and by whom, never the values."""
    what = renderer.phrase(
        look.presentation, CHANGED_SUBJECTS.get(change.subject, "the company's details")
    )
    return renderer.render(
        "details-changed",
        look.presentation,
        account_name=look.account_name,
        subject={"what": what},
        context={
            "notice_name": change.notice_name or "",
            "changed_by_name": change.changed_by_name,
            "what": what,
            "changed_at": change.changed_at,
            "fields": change.fields,
        },
    )


def export_message(renderer: Renderer, look: Look, export: ExportAssembled) -> RenderedEmail:
    """The covering message of the termination's export (TERMINATION): with the bundle
    attached, or with the signed link that opens it for the grace period."""
    return renderer.render(
        "account-export",
        look.presentation,
        account_name=look.account_name,
        subject={"account": export.account_name},
        context={
            "size": export.size,
            "sha256": export.sha256,
            "download_url": export.download_url,
            "link_expires_at": export.link_expires_at,
        },
    )


def certificate_message(
    renderer: Renderer, look: Look, purged: AccountPurged, key_url: str
) -> RenderedEmail:
    """The covering message of the signed purge certificate (TERMINATION): the last one."""
    assert purged.certificate is not None
    completed_at = datetime.fromisoformat(json.loads(purged.certificate)["completed_at"])
    return renderer.render(
        "purge-certificate",
        look.presentation,
        account_name=look.account_name,
        subject={"account": look.account_name},
        context={
            "certificate_id": str(purged.certificate_id),
            "completed_at": completed_at,
            "key_id": purged.signing_key_id or "",
            "key_url": key_url,
        },
    )
