"""Statements' pure rules: aging buckets at their edges, running balances."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from billing.statements.domain import (
    AgingBucket,
    Entry,
    EntryKind,
    Outstanding,
    aging,
    bucket_of,
    running_balances,
)

END = date(2026, 6, 30)


@pytest.mark.parametrize(
    ("days_overdue", "bucket"),
    [
        (-5, AgingBucket.CURRENT),
        (0, AgingBucket.CURRENT),
        (1, AgingBucket.DAYS_1_30),
        (30, AgingBucket.DAYS_1_30),
        (31, AgingBucket.DAYS_31_60),
        (60, AgingBucket.DAYS_31_60),
        (61, AgingBucket.DAYS_61_90),
        (90, AgingBucket.DAYS_61_90),
        (91, AgingBucket.OVER_90),
    ],
)
def test_an_amount_falls_in_the_bucket_of_its_days_past_due(
    days_overdue: int, bucket: AgingBucket
) -> None:
    assert bucket_of(END - timedelta(days=days_overdue), END) is bucket


def test_aging_sums_each_bucket_and_shows_every_bucket() -> None:
    owed = [
        Outstanding("INV-1", END, Decimal("10.00")),
        Outstanding("INV-2", END - timedelta(days=45), Decimal("5.50")),
        Outstanding("INV-3", END - timedelta(days=50), Decimal("4.50")),
    ]
    assert aging(owed, END) == {
        AgingBucket.CURRENT: Decimal("10.00"),
        AgingBucket.DAYS_1_30: Decimal(0),
        AgingBucket.DAYS_31_60: Decimal("10.00"),
        AgingBucket.DAYS_61_90: Decimal(0),
        AgingBucket.OVER_90: Decimal(0),
    }


def test_the_balance_runs_from_the_opening_balance() -> None:
    entries = [
        Entry(END, EntryKind.INVOICE, "INV-1", None, Decimal(100), Decimal(0)),
        Entry(END, EntryKind.CREDIT_NOTE, "CN-1", "INV-1", Decimal(0), Decimal(30)),
    ]
    assert running_balances(Decimal(20), entries) == [Decimal(120), Decimal(90)]
