"""Payments' pure rules: how a payment or refund moves money between invoice and credit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing.invoices.domain import minor_units


@dataclass(frozen=True)
class PaymentSplit:
    """A payment: what settles the invoice, and what is left over as the customer's credit."""

    applied: Decimal
    credit: Decimal


def split_payment(amount: Decimal, due: Decimal) -> PaymentSplit:
    """A payment settles what is due, and an overpayment is kept as credit (never lost)."""
    applied = min(amount, max(due, Decimal(0)))
    return PaymentSplit(applied=applied, credit=amount - applied)


@dataclass(frozen=True)
class RefundSplit:
    """A refund: what is taken from the customer's credit, and what from the invoice."""

    from_credit: Decimal
    from_invoice: Decimal


def split_refund(amount: Decimal, *, credit_available: Decimal) -> RefundSplit:
    """A refund gives back unused credit first (an overpayment returned leaves the invoice
    paid), then what was paid of the invoice, which is owed again."""
    from_credit = min(amount, max(credit_available, Decimal(0)))
    return RefundSplit(from_credit=from_credit, from_invoice=amount - from_credit)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """An amount as the whole number of minor units gateways speak (EUR 12.34 -> 1234)."""
    scaled = amount.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} is finer than {currency}'s minor unit")
    return int(scaled)


def from_minor_units(units: int, currency: str) -> Decimal:
    """Minor units back to an amount (1234 -> EUR 12.34)."""
    return Decimal(units).scaleb(-minor_units(currency))
