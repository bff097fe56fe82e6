"""The templates (USE, LINKS): every kind in every mail language, money in the currency's minor
units and dates in the account's locale and time zone, user text inert in HTML."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from uuid import uuid4

import pytest
from babel.numbers import format_currency

from notifications.messages import (
    Look,
    Reminder,
    credit_note_message,
    details_changed_message,
    export_message,
    invitation_message,
    invoice_message,
    new_device_message,
    receipt_message,
    reminder_message,
    statement_message,
)
from notifications.rendering import (
    PHRASES,
    SUBJECTS,
    TEMPLATES,
    RenderedEmail,
    Renderer,
    _environment,
)
from notifications.translations import CATALOG
from shared.contracts import (
    MAIL_LANGUAGES,
    CreditNoteIssued,
    DetailsChanged,
    ExportAssembled,
    InvoiceIssued,
    InvoiceLine,
    IssuedInvoiceCustomer,
    MailPresentation,
    NewDeviceSignedIn,
    PaymentReceived,
    StatementEntry,
    StatementIssued,
    TaxTotal,
    UserInvited,
)

LOCALES = ("en-US", "en-GB", "fr-FR", "fr-CA", "de-DE", "de-CH", "es-ES", "es-MX")
RENDERER = Renderer()
CUSTOMER = IssuedInvoiceCustomer(
    customer_id=uuid4(), name="Bob Buyer", email="bob@example.com", address="9 Buyer Road"
)


def _invoice(currency: str = "EUR", total: str = "118.5500") -> InvoiceIssued:
    return InvoiceIssued(
        account_id=uuid4(),
        invoice_id=uuid4(),
        number="INV-000008",
        seller_name="Acme SA",
        seller_address="1 New Street, Lyon",
        seller_tax_id="FR40303265045",
        customer=CUSTOMER,
        currency=currency,
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
                quantity=Decimal("1.5"),
                unit_price=Decimal("6.6667"),
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
        total=Decimal(total),
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 1, 31),
    )


def _every_message(locale: str, currency: str, amount: Decimal) -> dict[str, RenderedEmail]:
    look = Look(
        presentation=MailPresentation(locale=locale, time_zone="Europe/Paris"),
        account_name="Acme SA",
    )
    account_id = uuid4()
    at = datetime(2026, 11, 22, 17, 5, tzinfo=UTC)
    return {
        "invoice": invoice_message(RENDERER, look, _invoice(currency, str(amount))),
        "credit-note": credit_note_message(
            RENDERER,
            look,
            CreditNoteIssued(
                account_id=account_id,
                credit_note_id=uuid4(),
                number="CN-000001",
                invoice_id=uuid4(),
                invoice_number="INV-000008",
                reason="Returned",
                seller_name="Acme SA",
                customer=CUSTOMER,
                currency=currency,
                lines=_invoice().lines,
                subtotal=amount,
                tax_total=Decimal(0),
                total=amount,
                issue_date=date(2026, 2, 1),
            ),
        ),
        "statement": statement_message(
            RENDERER,
            look,
            StatementIssued(
                account_id=account_id,
                customer=CUSTOMER,
                seller_name="Acme SA",
                currency=currency,
                period_start=date(2026, 10, 1),
                period_end=date(2026, 10, 31),
                opening_balance=Decimal(0),
                entries=[
                    StatementEntry(
                        on=date(2026, 10, 3),
                        kind="invoice",
                        number="INV-000008",
                        debit=amount,
                        credit=Decimal(0),
                        balance=amount,
                    )
                ],
                closing_balance=amount,
                aging={"current": amount},
            ),
        ),
        "payment-receipt": receipt_message(
            RENDERER,
            look,
            PaymentReceived(
                account_id=account_id,
                payment_id=uuid4(),
                invoice_id=uuid4(),
                invoice_number="INV-000008",
                customer=CUSTOMER,
                currency=currency,
                amount=amount,
                applied_amount=amount,
                credit_amount=Decimal(0),
                amount_due=amount,
                received_at=at,
            ),
        ),
        "payment-reminder": reminder_message(
            RENDERER,
            look,
            Reminder(
                customer_name="Bob Buyer",
                number="INV-000008",
                currency=currency,
                amount_due=amount,
                due_date=date(2026, 11, 1),
                today=date(2026, 11, 8),
            ),
        ),
        "invitation": invitation_message(
            RENDERER,
            look,
            UserInvited(
                account_id=account_id,
                user_id=uuid4(),
                account_name="Acme SA",
                inviter_name="Olga Owner",
                name="Ivan",
                email="ivan@example.com",
                role="read_only",
                token="tok-123",
                expires_at=at,
            ),
            "https://billing.example/invitations/accept",
        ),
        "new-device": new_device_message(
            RENDERER,
            look,
            NewDeviceSignedIn(
                account_id=account_id,
                user_id=uuid4(),
                name="Olga",
                email="olga@example.com",
                address="203.0.113.9",
                browser="Firefox 140",
                operating_system="Linux",
                signed_in_at=at,
            ),
        ),
        "details-changed": details_changed_message(
            RENDERER,
            look,
            DetailsChanged(
                account_id=account_id,
                change_id=uuid4(),
                subject="account",
                subject_id=uuid4(),
                fields=["address", "tax_id"],
                changed_by_name="Carla Admin",
                changed_at=at,
                notice_name="Olga",
                notice_email="olga@example.com",
            ),
        ),
        "account-export": export_message(
            RENDERER,
            look,
            ExportAssembled(
                account_id=account_id,
                saga_id=uuid4(),
                transfer_id=uuid4(),
                chunks=1,
                file_name="quittance-export.zip",
                size=123456,
                sha256="ab" * 32,
                account_name="Acme SA",
                recipient_email="olga@example.com",
            ),
        ),
        "account-export-link": export_message(
            RENDERER,
            look,
            ExportAssembled(
                account_id=account_id,
                saga_id=uuid4(),
                transfer_id=uuid4(),
                chunks=0,
                file_name="quittance-export.zip",
                size=123456,
                sha256="ab" * 32,
                account_name="Acme SA",
                recipient_email="olga@example.com",
                download_url="https://exports.example.com/exports/download?saga=1&signature=x",
                link_expires_at=at,
            ),
        ),
    }


def _message_ids() -> set[str]:
    environment = _environment("en")
    found = set(SUBJECTS.values()) | set(PHRASES)
    for path in TEMPLATES.glob("*.j2"):
        for _, _, message in environment.extract_translations(path.read_text()):
            found.update(m for m in (message if isinstance(message, tuple) else (message,)) if m)
    return found


PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


@pytest.mark.clause("USE")
def test_use_every_message_of_every_template_is_translated_into_every_mail_language() -> None:
    """A template line added in English only fails here, not in a customer's inbox."""
    ids = _message_ids()
    assert len(ids) > 50, "the extraction found the templates' messages"
    for language in MAIL_LANGUAGES:
        if language == "en":
            continue
        missing = sorted(ids - set(CATALOG[language]))
        assert not missing, f"{language} lacks {missing}"
        for message in ids:
            assert sorted(PLACEHOLDER.findall(CATALOG[language][message])) == sorted(
                PLACEHOLDER.findall(message)
            ), f"{language}: the placeholders of {message!r}"


@pytest.mark.clause("USE")
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    ("currency", "amount", "exponent"),
    [
        ("EUR", Decimal("1234.5000"), 2),
        ("JPY", Decimal("1234.0000"), 0),
        ("BHD", Decimal("1.2345"), 3),
    ],
)
def test_use_every_kind_renders_in_every_locale_with_amounts_in_the_currencys_minor_units(
    locale: str, currency: str, amount: Decimal, exponent: int
) -> None:
    messages = _every_message(locale, currency, amount)
    babel_locale = locale.replace("-", "_")
    shown = format_currency(
        amount.quantize(Decimal(1).scaleb(-exponent)), currency, locale=babel_locale
    )
    for kind in ("invoice", "statement", "payment-receipt", "payment-reminder", "credit-note"):
        for body in (messages[kind].text, messages[kind].html):
            assert shown in body, f"{kind} in {locale}: {shown!r} in the currency's minor unit"
            assert str(amount) not in body, f"{kind} in {locale}: never the stored four decimals"
    language = locale.split("-")[0]
    for kind, message in messages.items():
        assert message.subject
        assert message.text.strip()
        assert "<html" in message.html
        assert f'lang="{language}"' in message.html
        if language != "en":
            assert message.text != _every_message("en-US", currency, amount)[kind].text


@pytest.mark.clause("USE")
def test_use_dates_are_written_in_the_locale_and_instants_in_the_accounts_time_zone() -> None:
    french = _every_message("fr-FR", "EUR", Decimal(10))
    assert "1 janvier 2026" in french["invoice"].text
    assert "31 janvier 2026" in french["invoice"].text
    # 17:05 UTC is 18:05 in Paris in November.
    assert "18:05" in french["new-device"].text
    german = _every_message("de-DE", "EUR", Decimal(10))
    assert "31. Januar 2026" in german["invoice"].text
    assert "Rechnung INV-000008" in german["invoice"].subject


@pytest.mark.clause("USE")
def test_use_a_language_mail_is_not_written_in_falls_back_to_english() -> None:
    look = Look(presentation=MailPresentation(locale="ja-JP"), account_name="Acme SA")
    rendered = invoice_message(RENDERER, look, _invoice())
    assert rendered.subject == "Invoice INV-000008 from Acme SA"
    assert "Total due: €118.55, by January 31, 2026." in rendered.text


@pytest.mark.clause("USE")
def test_use_the_invoice_shows_each_discount_and_the_tax_of_each_rate() -> None:
    look = Look(presentation=MailPresentation(locale="en-GB"), account_name="Acme SA")
    text = invoice_message(RENDERER, look, _invoice()).text
    assert "- Work: 2 x €50.00, less 10% (Tax 20%) = €90.00" in text
    assert "- Books: 1.5 x €6.6667 (Tax 5.5%) = €10.00" in text, "a unit price keeps its digits"
    assert "Subtotal: €100.00" in text
    assert "Tax 5.5% on €10.00: €0.55" in text
    assert "Tax 20% on €90.00: €18.00" in text
    assert "Total due: €118.55, by 31 January 2026." in text


@pytest.mark.clause("RECTIFY")
def test_rectify_the_invoice_prints_the_sellers_address_and_tax_id_as_issued() -> None:
    look = Look(presentation=MailPresentation(), account_name="Acme SA")
    text = invoice_message(RENDERER, look, _invoice()).text
    assert "From:\nAcme SA\n1 New Street, Lyon\nTax id: FR40303265045\n" in text
    assert "Bill to:\nBob Buyer\n9 Buyer Road\n" in text


@pytest.mark.clause("RECTIFY")
def test_rectify_a_change_notice_names_the_fields_and_who_changed_them_not_the_values() -> None:
    rendered = _every_message("en-US", "EUR", Decimal(1))["details-changed"]
    assert rendered.subject == "Quittance: the company's details changed"
    assert "Carla Admin changed the company's details on Quittance at" in rendered.text
    assert ": address, tax_id." in rendered.text


@pytest.mark.clause("LINKS")
def test_links_user_text_is_escaped_in_html_and_its_links_cannot_run_script() -> None:
    """LINKS: a customer's name, address and a line's text are the account's users' words."""
    hostile = '<script>alert(1)</script><a href="javascript:alert(2)">x</a> https://ok.example/p'
    customer = IssuedInvoiceCustomer(
        customer_id=uuid4(), name=hostile, email="bob@example.com", address=hostile
    )
    invoice = _invoice().model_copy(
        update={
            "customer": customer,
            "seller_name": hostile,
            "lines": [_invoice().lines[0].model_copy(update={"description": hostile})],
        }
    )
    look = Look(presentation=MailPresentation(logo_url="javascript:alert(3)"), account_name=hostile)
    html = invoice_message(RENDERER, look, invoice).html
    assert "<script" not in html
    assert 'href="javascript' not in html
    assert 'src="javascript' not in html
    assert "&lt;script&gt;" in html
    links = re.findall(r"<a [^>]*>", html)
    assert links, "the https link is a link"
    assert all('rel="nofollow noopener noreferrer"' in link for link in links)
    assert all('href="https://ok.example/p"' in link for link in links)
    assert "<img" not in html, "a logo that is not https is not shown"


@pytest.mark.clause("USE")
def test_use_the_logo_and_the_accounts_name_head_the_html() -> None:
    look = Look(
        presentation=MailPresentation(logo_url="https://cdn.example/acme.png"),
        account_name="Acme & Co",
    )
    html = invoice_message(RENDERER, look, _invoice()).html
    assert '<img src="https://cdn.example/acme.png" alt="Acme &amp; Co"' in html


@pytest.mark.clause("USE")
def test_use_an_html_body_parses_as_the_alternative_of_the_text() -> None:
    """The message notifications builds is multipart/alternative: text first, then HTML."""
    from email.message import EmailMessage

    rendered = _every_message("en-US", "EUR", Decimal(1))["invoice"]
    message = EmailMessage()
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    parsed = message_from_bytes(bytes(message), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
