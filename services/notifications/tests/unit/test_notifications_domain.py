"""Notifications' rules: only transactional kinds (USE), stable Message-IDs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import uuid4

from notifications.domain import (
    MessageKind,
    details_changed_email,
    invoice_email,
    message_id_for,
    money,
)
from shared.contracts import (
    DetailsChanged,
    InvoiceIssued,
    InvoiceLine,
    IssuedInvoiceCustomer,
    TaxTotal,
)


def test_use_there_is_no_marketing_kind_of_message() -> None:
    kinds = {kind.value for kind in MessageKind}
    assert kinds == {
        "invoice",
        "credit-note",
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


def test_invoice_email_shows_each_discount_and_the_tax_of_each_rate() -> None:
    event = InvoiceIssued(
        account_id=uuid4(),
        invoice_id=uuid4(),
        number="INV-000008",
        seller_name="Acme",
        customer=IssuedInvoiceCustomer(customer_id=uuid4(), name="Bob", email="bob@example.com"),
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Work",
                quantity=Decimal(2),
                unit_price=Decimal(50),
                amount=Decimal(100),
                discount_percent=Decimal(10),
                discount_amount=Decimal(10),
                net_amount=Decimal(90),
                tax_rate=Decimal(20),
            ),
            InvoiceLine(
                description="Books",
                quantity=Decimal(1),
                unit_price=Decimal(10),
                amount=Decimal(10),
                tax_rate=Decimal("5.5"),
            ),
        ],
        subtotal=Decimal(100),
        taxes=[
            TaxTotal(rate=Decimal("5.5"), taxable_amount=Decimal(10), tax_amount=Decimal("0.55")),
            TaxTotal(rate=Decimal(20), taxable_amount=Decimal(90), tax_amount=Decimal(18)),
        ],
        tax_total=Decimal("18.55"),
        total=Decimal("118.55"),
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
    )
    _, body = invoice_email(event)
    assert "Work: 2 x 50 = 100.00 EUR, less 10% = 90.00 EUR (tax 20%)" in body
    assert "Books: 1 x 10 = 10.00 EUR (tax 5.5%)" in body
    assert "Subtotal: 100.00 EUR" in body
    assert "Tax 5.5% on 10.00 EUR: 0.55 EUR" in body
    assert "Tax 20% on 90.00 EUR: 18.00 EUR" in body
    assert "Total due: 118.55 EUR, by 2026-01-31" in body


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


def test_rectify_the_invoice_email_prints_the_sellers_address_and_tax_id_as_issued() -> None:
    """RECTIFY: the email shows the details the invoice was issued with, from the event."""
    event = InvoiceIssued(
        account_id=uuid4(),
        invoice_id=uuid4(),
        number="INV-000008",
        seller_name="Acme SA",
        seller_address="1 New Street, Lyon",
        seller_tax_id="FR40303265045",
        customer=IssuedInvoiceCustomer(
            customer_id=uuid4(), name="Bob", email="bob@example.com", address="9 Buyer Road"
        ),
        currency="EUR",
        lines=[
            InvoiceLine(
                description="Work", quantity=Decimal(1), unit_price=Decimal(5), amount=Decimal(5)
            )
        ],
        total=Decimal(5),
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
    )
    _, body = invoice_email(event)
    assert "From:\nAcme SA\n1 New Street, Lyon\nTax id: FR40303265045\n" in body
    assert "Bill to:\nBob\n9 Buyer Road\n" in body


def test_rectify_a_change_notice_names_the_fields_and_who_changed_them_not_the_values() -> None:
    event = DetailsChanged(
        account_id=uuid4(),
        change_id=uuid4(),
        subject="account",
        subject_id=uuid4(),
        fields=["address", "tax_id"],
        changed_by_name="Carla Admin",
        changed_at=datetime(2026, 11, 22, 17, 5, tzinfo=UTC),
        notice_name="Olga",
        notice_email="olga@example.com",
    )
    subject, body = details_changed_email(event)
    assert subject == "Quittance: the company's details changed"
    assert "Carla Admin changed the company's details" in body
    assert "2026-11-22 17:05 UTC: address, tax_id." in body
