"""Invoices' pure rules: money at the currency's minor unit, totals, numbering. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo

from iso4217 import Currency

MAX_LINE_AMOUNT = Decimal("999999999999.99")  # a line; 500 of them still fit NUMERIC(18, 4)
MAX_DUE_YEARS = 10  # further out than this is a typo, not a payment term
MAX_TERMS_DAYS = 365  # payment terms longer than a year are a typo
DEFAULT_TERMS_DAYS = 30  # net 30, until the account sets its own


class InvoiceStatus(StrEnum):
    """Where an invoice is in its life."""

    DRAFT = "draft"
    ISSUED = "issued"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"


# Issued and owed, in part or not at all, or settled: an invoice that counts.
ISSUED_STATUSES = frozenset(
    {InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.PAID}
)


class InvoiceStateError(Exception):
    """The invoice is not in a state that allows the change."""


@cache  # on every amount of every line: the ISO list lookup is not free
def minor_units(currency: str) -> int:
    """Decimal places of a currency, from the ISO 4217 list (JPY 0, EUR 2, BHD 3)."""
    exponent = Currency(currency).exponent
    if exponent is None:
        raise ValueError(f"{currency} is not a currency an invoice can be in")
    return exponent


def is_invoice_currency(code: str) -> bool:
    """Whether code is a current ISO 4217 currency with minor units (not XAU, XXX, XTS)."""
    try:
        return Currency(code).exponent is not None
    except ValueError:
        return False


def invoice_currencies() -> list[str]:
    """Every code is_invoice_currency accepts, sorted: the API schema's enum."""
    return sorted(currency.code for currency in Currency if currency.exponent is not None)


def to_minor_unit(amount: Decimal, currency: str) -> Decimal:
    """An amount at exactly the currency's decimal places, as invoices print it."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def plain_decimal(value: Decimal) -> Decimal:
    """A quantity or unit price without trailing zeros (2.5000 -> 2.5), never in exponent form."""
    stripped = value.normalize()
    return stripped.quantize(Decimal(1)) if stripped == stripped.to_integral() else stripped


@cache
def _minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    """quantity x unit price, rounded half up to the currency's minor unit."""
    return (quantity * unit_price).quantize(_minor_unit(currency), rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A line's money: its amount, its discount, its net, and the rate the net is taxed at."""

    amount: Decimal  # quantity x unit price, at the minor unit
    discount_amount: Decimal
    net_amount: Decimal
    tax_rate: Decimal


@dataclass(frozen=True, slots=True)
class TaxTotal:
    """One rate's tax: the net amounts taxed at it, and the tax on their sum."""

    rate: Decimal
    taxable_amount: Decimal
    tax_amount: Decimal


@dataclass(frozen=True, slots=True)
class Totals:
    """An invoice's sums: net of discounts, tax per rate, and the total due."""

    subtotal: Decimal
    taxes: tuple[TaxTotal, ...]
    tax_total: Decimal
    total: Decimal


def price_line(
    quantity: Decimal,
    unit_price: Decimal,
    currency: str,
    *,
    discount_percent: Decimal = Decimal(0),
    tax_rate: Decimal = Decimal(0),
) -> PricedLine:
    """A line's amount, its discount (a percentage of the amount, rounded half up to the minor
    unit) and its net."""
    amount = line_amount(quantity, unit_price, currency)
    discount = (amount * discount_percent / 100).quantize(
        _minor_unit(currency), rounding=ROUND_HALF_UP
    )
    return PricedLine(amount, discount, amount - discount, tax_rate)


def tax_on(base: Decimal, rate: Decimal, currency: str) -> Decimal:
    """The tax at rate (percent) on a sum of nets, rounded half up to the minor unit once."""
    return (base * rate / 100).quantize(_minor_unit(currency), rounding=ROUND_HALF_UP)


def invoice_totals(lines: Iterable[PricedLine], currency: str) -> Totals:
    """The nets summed, then each rate's tax on the sum of its lines' nets, rounded once per
    rate (as EU VAT invoices show it, so lines' roundings do not add up), then the total."""
    taxable: dict[Decimal, Decimal] = {}
    subtotal = Decimal(0)
    for line in lines:
        subtotal += line.net_amount
        rate = plain_decimal(line.tax_rate)
        taxable[rate] = taxable.get(rate, Decimal(0)) + line.net_amount
    taxes = tuple(
        TaxTotal(
            rate=rate,
            taxable_amount=base,
            tax_amount=tax_on(base, rate, currency),
        )
        for rate, base in sorted(taxable.items())
        if rate
    )
    tax_total = sum((tax.tax_amount for tax in taxes), Decimal(0))
    return Totals(subtotal, taxes, tax_total, subtotal + tax_total)


def due_date_for(issue_date: date, terms_days: int) -> date:
    """The due date of an invoice on payment terms: so many days after its issue date."""
    return issue_date + timedelta(days=terms_days)


def format_invoice_number(sequence: int) -> str:
    """The printed invoice number for a per-account sequence value."""
    return f"INV-{sequence:06d}"


def format_credit_note_number(sequence: int) -> str:
    """The printed number of a credit note: a series of its own, gapless per account."""
    return f"CN-{sequence:06d}"


def issue_date_at(moment: datetime, time_zone: str) -> date:
    """The date an invoice issued at that moment bears: the day it is where the seller is."""
    return moment.astimezone(ZoneInfo(time_zone)).date()


def ensure_issuable(status: InvoiceStatus) -> None:
    """Only a draft can be issued."""
    if status is not InvoiceStatus.DRAFT:
        raise InvoiceStateError(f"invoice is {status}, only a draft can be issued")


def ensure_voidable(
    status: InvoiceStatus, *, credited: Decimal = Decimal(0), paid: Decimal = Decimal(0)
) -> None:
    """Only an issued, unpaid invoice can be voided: a draft was never sent, a void one is
    already; one partly credited is credited for the rest instead, or it would be given back
    twice; one paid in part is credited, so the payment becomes the customer's credit."""
    if status not in ISSUED_STATUSES:
        raise InvoiceStateError(f"invoice is {status}, only an issued invoice can be voided")
    if credited:
        raise InvoiceStateError("part of this invoice is credited: credit the rest instead")
    if paid:
        raise InvoiceStateError("this invoice has payments: credit it instead, or refund them")


def ensure_creditable(status: InvoiceStatus) -> None:
    """Only an issued invoice is credited: a draft is changed instead, a void one is not due."""
    if status not in ISSUED_STATUSES:
        raise InvoiceStateError(f"invoice is {status}, only an issued invoice can be credited")


def amount_due(total: Decimal, credited: Decimal, paid: Decimal) -> Decimal:
    """What an issued invoice still asks for: its total less credit notes and payments."""
    return max(total - credited - paid, Decimal(0))


def payment_status(total: Decimal, credited: Decimal, paid: Decimal) -> InvoiceStatus:
    """An issued invoice's status from what was credited and paid of it."""
    if paid > 0 and paid >= total - credited:
        return InvoiceStatus.PAID
    if paid > 0:
        return InvoiceStatus.PARTIALLY_PAID
    return InvoiceStatus.ISSUED
