"""What notifications may send and how it reads; pure functions, no I/O."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from uuid import UUID

from iso4217 import Currency

from shared.contracts import (
    CreditNoteIssued,
    DetailsChanged,
    ExportAssembled,
    InvoiceIssued,
    InvoiceLine,
    NewDeviceSignedIn,
    StatementIssued,
    TaxTotal,
    UserInvited,
)


class MessageKind(StrEnum):
    """The closed list of transactional kinds (USE): there is no marketing kind, by construction."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit-note"
    STATEMENT = "statement"
    PAYMENT_REMINDER = "payment-reminder"
    ACCOUNT_EXPORT = "account-export"
    INVITATION = "invitation"
    SECURITY_NOTICE = "security-notice"


class EmailStatus(StrEnum):
    """Whether the mail server has accepted the message."""

    QUEUED = "queued"
    SENT = "sent"


def header_value(value: str) -> str:
    """A header value no input can break: control characters (CR, LF, NUL...) become spaces."""
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in value).strip()


def message_id_for(event_id: UUID, domain: str) -> str:
    """The Message-ID of the email an event causes: the same event, the same id, always."""
    return f"<{event_id}@{domain}>"


def money(amount: Decimal, currency: str) -> str:
    """An amount as an invoice prints it: the currency's minor unit (JPY 0, EUR 2, BHD 3)."""
    exponent = Currency(currency).exponent or 0
    return f"{amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)} {currency}"


def plain_number(value: Decimal) -> str:
    """A quantity or unit price without trailing zeros (2.5000 -> 2.5), never in exponent form."""
    stripped = value.normalize()
    return f"{stripped.quantize(Decimal(1)) if stripped == stripped.to_integral() else stripped}"


def _invoice_line(line: InvoiceLine, currency: str) -> str:
    text = (
        f"  {line.description}: {plain_number(line.quantity)} x {plain_number(line.unit_price)}"
        f" = {money(line.amount, currency)}"
    )
    if line.discount_amount:
        net = line.amount - line.discount_amount if line.net_amount is None else line.net_amount
        text += f", less {plain_number(line.discount_percent)}% = {money(net, currency)}"
    if line.tax_rate:
        text += f" (tax {plain_number(line.tax_rate)}%)"
    return text


def _tax_lines(subtotal: Decimal, taxes: list[TaxTotal], currency: str) -> list[str]:
    """The subtotal and each rate's tax, when there are taxes."""
    if not taxes:
        return []
    return [f"Subtotal: {money(subtotal, currency)}"] + [
        f"Tax {plain_number(tax.rate)}% on {money(tax.taxable_amount, currency)}: "
        f"{money(tax.tax_amount, currency)}"
        for tax in taxes
    ]


def invoice_email(event: InvoiceIssued) -> tuple[str, str]:
    """Subject and plain-text body of an issued invoice."""
    lines = "\n".join(_invoice_line(line, event.currency) for line in event.lines)
    sums = _tax_lines(
        event.total if event.subtotal is None else event.subtotal, event.taxes, event.currency
    )
    seller = "\n".join(
        part
        for part in (
            event.seller_name,
            event.seller_address,
            event.seller_tax_id and f"Tax id: {event.seller_tax_id}",
        )
        if part
    )
    bill_to = "\n".join(
        part
        for part in (
            event.customer.name,
            event.customer.address,
            event.customer.tax_id and f"Tax id: {event.customer.tax_id}",
        )
        if part
    )
    body = (
        f"Dear {event.customer.name},\n\n"
        f"{event.seller_name} has issued invoice {event.number} dated {event.issue_date}.\n\n"
        f"From:\n{seller}\n\nBill to:\n{bill_to}\n\n"
        f"{lines}\n\n"
        + "".join(f"{line}\n" for line in sums)
        + f"Total due: {money(event.total, event.currency)}, by {event.due_date}.\n\n"
        "This is a transactional message about your invoice.\n"
    )
    return f"Invoice {event.number} from {event.seller_name}", body


def credit_note_email(event: CreditNoteIssued) -> tuple[str, str]:
    """Subject and plain-text body of a credit note."""
    lines = "\n".join(_invoice_line(line, event.currency) for line in event.lines)
    sums = _tax_lines(event.subtotal, event.taxes, event.currency)
    body = (
        f"Dear {event.customer.name},\n\n"
        f"{event.seller_name} has issued credit note {event.number} dated {event.issue_date}, "
        f"correcting invoice {event.invoice_number}.\n\nReason: {event.reason}\n\n"
        f"{lines}\n\n"
        + "".join(f"{line}\n" for line in sums)
        + f"Total credited: {money(event.total, event.currency)}.\n\n"
        "This is a transactional message about your invoice.\n"
    )
    return f"Credit note {event.number} from {event.seller_name}", body


def statement_email(event: StatementIssued) -> tuple[str, str]:
    """Subject and plain-text body of a monthly statement (the PDF is attached)."""
    currency = event.currency
    lines = "\n".join(
        f"  {entry.on}  {entry.kind.replace('_', ' ')} {entry.number}"
        + (f" ({entry.reference})" if entry.reference and entry.reference != entry.number else "")
        + (f"  +{money(entry.debit, currency)}" if entry.debit else "")
        + (f"  -{money(entry.credit, currency)}" if entry.credit else "")
        + f"  = {money(entry.balance, currency)}"
        for entry in event.entries
    )
    body = (
        f"Dear {event.customer.name},\n\n"
        f"Your statement from {event.seller_name} for {event.period_start} to "
        f"{event.period_end}:\n\n"
        f"Opening balance: {money(event.opening_balance, currency)}\n"
        f"{lines}\n"
        f"Closing balance: {money(event.closing_balance, currency)}\n\n"
        "This is a transactional message about your account.\n"
    )
    return f"Statement from {event.seller_name}, {event.period_start} to {event.period_end}", body


def export_email(event: ExportAssembled) -> tuple[str, str]:
    """Subject and body of the email that carries the termination export (TERMINATION)."""
    body = (
        f"Hello,\n\nThe contract of {event.account_name} with Quittance has ended.\n"
        "Attached is the record of all your information: CSV files (structured fields in JSON)\n"
        f"and a manifest. SHA-256 of the bundle ({event.size} bytes): {event.sha256}\n\n"
        "All your records will now be purged from our systems.\n"
    )
    return f"Your Quittance data export for {event.account_name}", body


def invitation_email(event: UserInvited, accept_url: str) -> tuple[str, str]:
    """Subject and body of an invitation to join an account's users."""
    body = (
        f"Hello {event.name},\n\n"
        f"{event.inviter_name} invited you to {event.account_name} on Quittance "
        f"as {event.role.replace('_', '-')}.\n\n"
        f"To accept, choose your password at {accept_url} with this invitation code:\n\n"
        f"  {event.token}\n\n"
        f"The invitation lapses on {event.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        "If you did not expect it, ignore this message: nothing happens until it is accepted.\n\n"
        "This is a transactional message about your access to an account.\n"
    )
    return f"{event.inviter_name} invited you to {event.account_name} on Quittance", body


def new_device_email(event: NewDeviceSignedIn) -> tuple[str, str]:
    """Subject and body of the notice of a sign-in from a new device (security, not marketing)."""
    body = (
        f"Hello {event.name},\n\n"
        f"Your Quittance account was signed in to from {event.browser} on "
        f"{event.operating_system}, address {event.address}"
        f"{f' (near {event.location})' if event.location else ''}, at "
        f"{event.signed_in_at:%Y-%m-%d %H:%M} UTC.\n\n"
        "If this was you, there is nothing to do. If not, change your password at once: every\n"
        "session then ends. An account owner or admin can also end any session.\n\n"
        "This is a security notice about your account.\n"
    )
    return "New sign-in to your Quittance account", body


CHANGED_SUBJECTS = {"account": "the company's details", "user": "your user details"}


def details_changed_email(event: DetailsChanged) -> tuple[str, str]:
    """Subject and body of the notice that details were corrected (security, not marketing)."""
    what = CHANGED_SUBJECTS.get(event.subject, f"{event.subject} details")
    body = (
        f"Hello {event.notice_name},\n\n"
        f"{event.changed_by_name} changed {what} on Quittance at "
        f"{event.changed_at:%Y-%m-%d %H:%M} UTC: {', '.join(event.fields)}.\n\n"
        "If this was expected, there is nothing to do. If not, sign in, check the account's\n"
        "record of changes and correct them, and change your password.\n\n"
        "This is a security notice about your account.\n"
    )
    return f"Quittance: {what} changed", body
