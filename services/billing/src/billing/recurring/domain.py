"""Recurring invoices' pure rules: the dates of the periods. No I/O."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from enum import StrEnum


class Interval(StrEnum):
    """How often a schedule issues."""

    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class ScheduleStatus(StrEnum):
    """Whether a schedule issues."""

    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


def period_date(anchor: date, interval: Interval, count: int, index: int) -> date:
    """The date of the index-th period from the anchor (0: the anchor itself), every `count`
    intervals; counted from the anchor, so the 31st stays the 31st where a month has one."""
    if interval is Interval.WEEK:
        return anchor + timedelta(weeks=count * index)
    months = count * index * (12 if interval is Interval.YEAR else 1)
    year, month = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)


def first_index_on_or_after(
    anchor: date, interval: Interval, count: int, index: int, day: date
) -> int:
    """The first period index from `index` whose date is not before `day` (a resumed schedule
    skips what fell due while it was paused)."""
    while period_date(anchor, interval, count, index) < day:
        index += 1
    return index
