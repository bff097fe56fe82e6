"""Billing's pure rules: money, numbering, and card-number refusal (NO-PAN)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.inputs import contains_card_number, luhn_valid
from billing.invoices.domain import (
    InvoiceStateError,
    InvoiceStatus,
    ensure_issuable,
    format_invoice_number,
    invoice_total,
    line_amount,
    plain_decimal,
    to_minor_unit,
)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111",
        "card 4111 1111 1111 1111 exp 12/29",
        "5500-0000-0000-0004",
        "378282246310005",  # Amex, 15 digits
        "6011000990139424",
        "4222222222222",  # 13 digits
    ],
)
def test_no_pan_card_numbers_are_recognised_with_spaces_or_dashes(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "Order 123456789012",  # 12 digits
        "IBAN DE89 3704 0044 0532 0130 00",  # letters break the run
        "phone +44 20 7946 0958",
        "",
        "41111111111111111111",  # 20 digits: longer than any card
    ],
)
def test_no_pan_other_numbers_are_not_mistaken_for_cards(text: str) -> None:
    assert not contains_card_number(text)


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_no_pan_any_luhn_valid_13_to_19_digit_string_is_caught(prefix: str) -> None:
    # Complete the prefix with the Luhn check digit: every such number must be refused.
    check = next(str(d) for d in range(10) if luhn_valid(prefix + str(d)))
    assert contains_card_number(f"note {prefix}{check} end")


def test_line_amount_rounds_half_up_to_the_currency_minor_unit() -> None:
    assert line_amount(Decimal("3"), Decimal("0.335"), "EUR") == Decimal("1.01")
    assert line_amount(Decimal("1"), Decimal("0.125"), "EUR") == Decimal("0.13")
    assert line_amount(Decimal("2"), Decimal("99.5"), "JPY") == Decimal("199")
    assert line_amount(Decimal("1"), Decimal("1.2345"), "KWD") == Decimal("1.235")


def test_amounts_are_presented_at_the_currency_minor_unit() -> None:
    assert str(to_minor_unit(Decimal("100.0500"), "EUR")) == "100.05"
    assert str(to_minor_unit(Decimal("199.0000"), "JPY")) == "199"
    assert str(to_minor_unit(Decimal("1.2"), "KWD")) == "1.200"


def test_quantities_and_prices_lose_trailing_zeros_but_never_use_exponents() -> None:
    assert str(plain_decimal(Decimal("2.5000"))) == "2.5"
    assert str(plain_decimal(Decimal("100.0000"))) == "100"
    assert str(plain_decimal(Decimal("10.005"))) == "10.005"


def test_invoice_total_sums_line_amounts_exactly() -> None:
    assert invoice_total([Decimal("0.10")] * 3) == Decimal("0.30")


def test_invoice_numbers_are_zero_padded_sequence_values() -> None:
    assert format_invoice_number(1) == "INV-000001"
    assert format_invoice_number(123456) == "INV-123456"


def test_only_a_draft_can_be_issued() -> None:
    ensure_issuable(InvoiceStatus.DRAFT)
    with pytest.raises(InvoiceStateError):
        ensure_issuable(InvoiceStatus.ISSUED)
