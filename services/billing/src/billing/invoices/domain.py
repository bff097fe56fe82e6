"""Invoices' pure rules: money at the currency's minor unit, totals, numbering. No I/O."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

# ISO 4217 minor units that differ from 2.
_MINOR_UNITS = {
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "ISK": 0,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}


class InvoiceStatus(StrEnum):
    """Where an invoice is in its life."""

    DRAFT = "draft"
    ISSUED = "issued"


class InvoiceStateError(Exception):
    """The invoice is not in a state that allows the change."""


def minor_units(currency: str) -> int:
    """Decimal places of a currency."""
    return _MINOR_UNITS.get(currency.upper(), 2)


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


def ensure_issuable(status: InvoiceStatus) -> None:
    """Only a draft can be issued."""
    if status is not InvoiceStatus.DRAFT:
        raise InvoiceStateError(f"invoice is {status}, only a draft can be issued")
