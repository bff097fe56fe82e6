"""Billing's pure rules: money and numbering (NO-PAN is shared.input_types' tests)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.invoices.domain import (
    InvoiceStateError,
    InvoiceStatus,
    due_date_for,
    ensure_issuable,
    ensure_voidable,
    format_invoice_number,
    invoice_totals,
    line_amount,
    plain_decimal,
    price_line,
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
    lines = [price_line(Decimal(1), Decimal("0.10"), "EUR")] * 3
    totals = invoice_totals(lines, "EUR")
    assert totals.subtotal == totals.total == Decimal("0.30")
    assert totals.taxes == ()
    assert totals.tax_total == 0


def test_a_discount_is_a_percentage_of_the_line_rounded_half_up_to_the_minor_unit() -> None:
    line = price_line(Decimal(3), Decimal("3.33"), "EUR", discount_percent=Decimal("12.5"))
    assert line.amount == Decimal("9.99")
    assert line.discount_amount == Decimal("1.25")  # 1.24875
    assert line.net_amount == Decimal("8.74")
    free = price_line(Decimal(2), Decimal(50), "JPY", discount_percent=Decimal(100))
    assert free.net_amount == 0


def test_tax_is_rounded_once_per_rate_on_the_sum_of_its_lines() -> None:
    # Three lines of 0.05 at 10%: per line 0.005 would round to 0.01 each (0.03); once, 0.02.
    small = [price_line(Decimal(1), Decimal("0.05"), "EUR", tax_rate=Decimal(10))] * 3
    reduced = price_line(Decimal(2), Decimal("19.99"), "EUR", tax_rate=Decimal("5.5"))
    untaxed = price_line(Decimal(1), Decimal(7), "EUR")
    totals = invoice_totals([*small, reduced, untaxed], "EUR")
    assert totals.subtotal == Decimal("47.13")
    assert [(t.rate, t.taxable_amount, t.tax_amount) for t in totals.taxes] == [
        (Decimal("5.5"), Decimal("39.98"), Decimal("2.20")),  # 2.1989
        (Decimal(10), Decimal("0.15"), Decimal("0.02")),  # 0.015
    ]
    assert totals.tax_total == Decimal("2.22")
    assert totals.total == Decimal("49.35")


def test_rates_written_differently_are_one_rate() -> None:
    lines = [
        price_line(Decimal(1), Decimal(10), "EUR", tax_rate=Decimal("20")),
        price_line(Decimal(1), Decimal(10), "EUR", tax_rate=Decimal("20.000")),
    ]
    (tax,) = invoice_totals(lines, "EUR").taxes
    assert tax.taxable_amount == Decimal(20)
    assert tax.tax_amount == Decimal(4)


def test_tax_in_a_currency_without_minor_units_rounds_to_whole_units() -> None:
    line = price_line(Decimal(1), Decimal(1999), "JPY", tax_rate=Decimal(10))
    assert invoice_totals([line], "JPY").total == Decimal(2199)  # 2198.9


def test_payment_terms_count_days_from_the_issue_date() -> None:
    assert due_date_for(date(2026, 1, 31), 30) == date(2026, 3, 2)
    assert due_date_for(date(2026, 1, 31), 0) == date(2026, 1, 31)


def test_only_an_issued_invoice_can_be_voided() -> None:
    ensure_voidable(InvoiceStatus.ISSUED)
    for status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID):
        with pytest.raises(InvoiceStateError):
            ensure_voidable(status)


def test_invoice_numbers_are_zero_padded_sequence_values() -> None:
    assert format_invoice_number(1) == "INV-000001"
    assert format_invoice_number(123456) == "INV-123456"


def test_only_a_draft_can_be_issued() -> None:
    ensure_issuable(InvoiceStatus.DRAFT)
    with pytest.raises(InvoiceStateError):
        ensure_issuable(InvoiceStatus.ISSUED)


def test_discounts_and_taxes_round_ties_half_up_in_each_currency() -> None:
    # Ties, where half-up and half-even differ: 50% of 0.05 is 0.025; 10% of 0.25 is 0.025.
    assert price_line(
        Decimal(1), Decimal("0.05"), "EUR", discount_percent=Decimal(50)
    ).discount_amount == Decimal("0.03")
    taxed = price_line(Decimal(1), Decimal("0.25"), "EUR", tax_rate=Decimal(10))
    assert invoice_totals([taxed], "EUR").tax_total == Decimal("0.03")
    # Three decimals: 12.5% of 0.004 is 0.0005.
    assert price_line(
        Decimal(1), Decimal("0.004"), "BHD", discount_percent=Decimal("12.5")
    ).discount_amount == Decimal("0.001")
    yen = price_line(Decimal(1), Decimal(5), "JPY", tax_rate=Decimal(10))
    assert invoice_totals([yen], "JPY").tax_total == Decimal(1)  # 0.5
