"""Statements' pure rules: running balances and aging buckets. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum


class EntryKind(StrEnum):
    """What a statement line records."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"
    VOID = "void"  # an invoice voided: no longer owed from that day
    PAYMENT = "payment"  # money received through the gateway (an overpayment too)
    REFUND = "refund"  # money given back


class AgingBucket(StrEnum):
    """How long past its due date an unpaid amount is, on the statement's last day."""

    CURRENT = "current"
    DAYS_1_30 = "1-30"
    DAYS_31_60 = "31-60"
    DAYS_61_90 = "61-90"
    OVER_90 = "over-90"


@dataclass(frozen=True)
class Entry:
    """A document in the period: an invoice owed (debit) or a credit note (credit)."""

    on: date
    kind: EntryKind
    number: str
    reference: str | None  # the invoice a credit note corrects, or that was voided
    debit: Decimal
    credit: Decimal


@dataclass(frozen=True)
class Outstanding:
    """An invoice not wholly credited by the statement's last day."""

    number: str
    due_date: date
    amount: Decimal


def bucket_of(due_date: date, as_of: date) -> AgingBucket:
    """The bucket of an amount due on due_date, seen on as_of."""
    overdue = (as_of - due_date).days
    if overdue <= 0:
        return AgingBucket.CURRENT
    if overdue <= 30:
        return AgingBucket.DAYS_1_30
    if overdue <= 60:
        return AgingBucket.DAYS_31_60
    if overdue <= 90:
        return AgingBucket.DAYS_61_90
    return AgingBucket.OVER_90


def aging(outstanding: Iterable[Outstanding], as_of: date) -> dict[AgingBucket, Decimal]:
    """The outstanding amounts summed per bucket, every bucket present."""
    buckets = dict.fromkeys(AgingBucket, Decimal(0))
    for item in outstanding:
        buckets[bucket_of(item.due_date, as_of)] += item.amount
    return buckets


def running_balances(opening: Decimal, entries: Iterable[Entry]) -> list[Decimal]:
    """The balance after each entry, from the opening balance."""
    balance, balances = opening, []
    for entry in entries:
        balance += entry.debit - entry.credit
        balances.append(balance)
    return balances
