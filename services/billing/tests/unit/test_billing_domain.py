"""Billing's pure rules: money and numbering (NO-PAN is shared.input_types' tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest

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
