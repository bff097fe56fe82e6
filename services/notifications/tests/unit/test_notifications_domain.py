"""Notifications' rules: only transactional kinds (USE), stable Message-IDs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import uuid4

from notifications.domain import MessageKind, invoice_email, message_id_for, money
from shared.contracts import InvoiceIssued, InvoiceLine, IssuedInvoiceCustomer


def test_use_there_is_no_marketing_kind_of_message() -> None:
    kinds = {kind.value for kind in MessageKind}
    assert kinds == {
        "invoice",
        "statement",
        "payment-reminder",
        "account-export",
        "invitation",
        "security-notice",
    }
    assert not any("market" in k or "newsletter" in k or "promo" in k for k in kinds)


def test_the_same_event_always_gets_the_same_message_id() -> None:
    event_id = uuid4()
    assert message_id_for(event_id, "q.example") == message_id_for(event_id, "q.example")
    assert message_id_for(event_id, "q.example") != message_id_for(uuid4(), "q.example")


def test_invoice_email_states_number_total_and_due_date() -> None:
    event = InvoiceIssued(
        account_id=uuid4(),
        invoice_id=uuid4(),
        number="INV-000007",
        seller_name="Acme",
        customer=IssuedInvoiceCustomer(customer_id=uuid4(), name="Bob", email="bob@example.com"),
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Work",
                quantity=Decimal("2.0000"),
                unit_price=Decimal("5.0050"),
                amount=Decimal("10.0100"),
            )
        ],
        total=Decimal("10.0100"),
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
    )
    subject, body = invoice_email(event)
    assert "INV-000007" in subject
    assert "Total due: 10.01 EUR, by 2026-01-31" in body, "the currency's minor unit"
    assert "Work: 2 x 5.005 = 10.01 EUR" in body


def test_invoice_email_amounts_follow_each_currency_minor_unit() -> None:
    assert money(Decimal("1234.5000"), "JPY") == "1235 JPY"
    assert money(Decimal("1.2345"), "BHD") == "1.235 BHD"
    assert money(Decimal("7"), "EUR") == "7.00 EUR"


def test_termination_no_name_can_break_a_mail_header() -> None:
    """A CR/LF in a company name must not add a header or stall the export email."""
    from email.message import EmailMessage

    from notifications.domain import header_value

    hostile = "Acme\r\nBcc: everyone@example.com\x00\x1b"
    message = EmailMessage()
    message["Subject"] = header_value(f"Your export for {hostile}")
    rendered = bytes(message)
    assert b"\r\nBcc:" not in rendered
    assert header_value(hostile) == "Acme  Bcc: everyone@example.com"
