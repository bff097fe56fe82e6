"""Notifications' rules: only transactional kinds (USE), stable Message-IDs, reminder stages,
quiet hours, which SMTP failures are retried."""

from __future__ import annotations

from datetime import date, time, timedelta
from email.message import EmailMessage
from uuid import uuid4

import pytest

from notifications.domain import (
    RETRY_DELAYS,
    MessageKind,
    due_stage,
    header_value,
    in_quiet_hours,
    is_permanent,
    message_id_for,
    reminder_offsets,
    retry_delay,
)
from shared.contracts import QuietHours, ReminderSchedule


@pytest.mark.clause("USE")
def test_use_there_is_no_marketing_kind_of_message() -> None:
    kinds = {kind.value for kind in MessageKind}
    assert kinds == {
        "purge-certificate",
        "invoice",
        "credit-note",
        "statement",
        "payment-reminder",
        "payment-receipt",
        "account-export",
        "invitation",
        "security-notice",
    }
    assert not any("market" in k or "newsletter" in k or "promo" in k for k in kinds)


def test_the_same_event_always_gets_the_same_message_id() -> None:
    event_id = uuid4()
    assert message_id_for(event_id, "q.example") == message_id_for(event_id, "q.example")
    assert message_id_for(event_id, "q.example") != message_id_for(uuid4(), "q.example")


@pytest.mark.clause("TERMINATION")
def test_termination_no_name_can_break_a_mail_header() -> None:
    """A CR/LF in a company name must not add a header or stall the export email."""
    hostile = "Acme\r\nBcc: everyone@example.com\x00\x1b"
    message = EmailMessage()
    message["Subject"] = header_value(f"Your export for {hostile}")
    assert b"\r\nBcc:" not in bytes(message)
    assert header_value(hostile) == "Acme  Bcc: everyone@example.com"


def test_a_schedule_is_its_stages_in_days_from_the_due_date_then_its_repeats() -> None:
    schedule = ReminderSchedule(
        days_before_due=[3],
        on_due=True,
        days_after_due=[14, 7],
        repeat_every_days=10,
        repeat_limit=2,
    )
    assert reminder_offsets(schedule) == [-3, 0, 7, 14, 24, 34]
    assert reminder_offsets(ReminderSchedule(repeat_every_days=5, repeat_limit=2)) == [5, 10]
    assert reminder_offsets(ReminderSchedule(days_before_due=[2])) == [-2]


def test_each_stage_falls_due_on_its_day_and_goes_once() -> None:
    stages = [-3, 0, 7]
    due = date(2026, 12, 10)
    assert due_stage(stages, due, date(2026, 12, 6), None) is None, "4 days before: nothing"
    assert due_stage(stages, due, date(2026, 12, 7), None) == -3
    assert due_stage(stages, due, date(2026, 12, 8), -3) is None, "sent: not again"
    assert due_stage(stages, due, date(2026, 12, 10), -3) == 0
    assert due_stage(stages, due, date(2026, 12, 17), 0) == 7
    assert due_stage(stages, due, date(2027, 3, 1), 7) is None, "the schedule is over"


def test_after_an_outage_only_the_latest_due_stage_is_sent_never_an_earlier_one_later() -> None:
    stages = [-3, 0, 7, 14]
    due = date(2026, 12, 10)
    # Down from before the first stage until after the third: one reminder, the latest.
    assert due_stage(stages, due, date(2026, 12, 18), None) == 7
    # Once the later one went, the skipped earlier ones never go.
    assert due_stage(stages, due, date(2026, 12, 19), 7) is None
    assert due_stage(stages, due, date(2026, 12, 24), 7) == 14


@pytest.mark.parametrize(
    ("local", "quiet", "expected"),
    [
        (time(12, 0), QuietHours(start=time(21), end=time(8)), False),
        (time(21, 0), QuietHours(start=time(21), end=time(8)), True),
        (time(2, 30), QuietHours(start=time(21), end=time(8)), True),
        (time(8, 0), QuietHours(start=time(21), end=time(8)), False),
        (time(13, 0), QuietHours(start=time(12), end=time(14)), True),
        (time(14, 0), QuietHours(start=time(12), end=time(14)), False),
        (time(3, 0), None, False),
    ],
)
def test_quiet_hours_may_wrap_midnight(
    local: time, quiet: QuietHours | None, expected: bool
) -> None:
    assert in_quiet_hours(local, quiet) is expected


def test_a_temporary_failure_is_retried_with_growing_waits_then_given_up() -> None:
    waits = [retry_delay(attempt) for attempt in range(1, len(RETRY_DELAYS) + 1)]
    assert all(wait is not None for wait in waits)
    assert waits == sorted(waits), "each wait at least the one before"
    assert sum((w for w in waits if w), timedelta()) > timedelta(days=1)
    assert retry_delay(len(RETRY_DELAYS) + 1) is None


def test_only_5xx_replies_are_permanent() -> None:
    assert all(is_permanent(code) for code in (550, 552, 554))
    assert not any(is_permanent(code) for code in (421, 450, 451, 250, None))
