"""Invoices' pure rules: money at the currency's minor unit, totals, numbering. No I/O."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from iso4217 import Currency

MAX_LINE_AMOUNT = Decimal("999999999999.99")  # a line; 500 of them still fit NUMERIC(18, 4)
MAX_DUE_YEARS = 10  # further out than this is a typo, not a payment term


class InvoiceStatus(StrEnum):
    """Where an invoice is in its life."""

    DRAFT = "draft"
    ISSUED = "issued"


class InvoiceStateError(Exception):
    """The invoice is not in a state that allows the change."""


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


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    """quantity x unit price, rounded half up to the currency's minor unit."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    return (quantity * unit_price).quantize(exponent, rounding=ROUND_HALF_UP)


def invoice_total(amounts: list[Decimal]) -> Decimal:
    """The sum of the line amounts."""
    return sum(amounts, Decimal(0))


def format_invoice_number(sequence: int) -> str:
    """The printed invoice number for a per-account sequence value."""
    return f"INV-{sequence:06d}"


def issue_date_at(moment: datetime, time_zone: str) -> date:
    """The date an invoice issued at that moment bears: the day it is where the seller is."""
    return moment.astimezone(ZoneInfo(time_zone)).date()


def ensure_issuable(status: InvoiceStatus) -> None:
    """Only a draft can be issued."""
    if status is not InvoiceStatus.DRAFT:
        raise InvoiceStateError(f"invoice is {status}, only a draft can be issued")
