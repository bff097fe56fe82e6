"""What notifications may send and how it reads; pure functions, no I/O."""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from uuid import UUID

from iso4217 import Currency

from shared.contracts import QuietHours, ReminderSchedule


class MessageKind(StrEnum):
    """The closed list of transactional kinds (USE): there is no marketing kind, by construction."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit-note"
    STATEMENT = "statement"
    PAYMENT_REMINDER = "payment-reminder"
    PAYMENT_RECEIPT = "payment-receipt"
    ACCOUNT_EXPORT = "account-export"
    PURGE_CERTIFICATE = "purge-certificate"
    INVITATION = "invitation"
    SECURITY_NOTICE = "security-notice"


class EmailStatus(StrEnum):
    """Where a message stands: waiting (first try or a retry), accepted, or given up on."""

    QUEUED = "queued"
    SENT = "sent"
    BOUNCED = "bounced"  # the server refused it for good (5xx), or retries ran out
    SUPPRESSED = "suppressed"  # not sent: the address bounced before
    CANCELLED = "cancelled"  # not sent: what it was about ended (a reminder of a paid invoice)


class ReminderState(StrEnum):
    """Whether an invoice may still be reminded of, and if not, why."""

    OPEN = "open"
    PAID = "paid"
    VOIDED = "voided"
    CREDITED = "credited"
    TERMINATED = "terminated"


# Temporary failures are retried after these waits, then the message counts as bounced.
RETRY_DELAYS = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(hours=12),
    timedelta(hours=24),
)


def retry_delay(attempts: int) -> timedelta | None:
    """How long to wait after a temporary failure on the given attempt; None: give up."""
    return RETRY_DELAYS[attempts - 1] if attempts <= len(RETRY_DELAYS) else None


def is_permanent(code: int | None) -> bool:
    """An SMTP reply the server will give again however often it is asked (RFC 5321 5yz)."""
    return code is not None and 500 <= code < 600


def reminder_offsets(schedule: ReminderSchedule) -> list[int]:
    """Each stage of a schedule as days from the due date (before: negative), in order."""
    offsets = {-days for days in schedule.days_before_due} | set(schedule.days_after_due)
    if schedule.on_due:
        offsets.add(0)
    stages = sorted(offsets)
    if schedule.repeat_every_days and schedule.repeat_limit:
        last = max([0, *stages])
        stages += [
            last + schedule.repeat_every_days * repeat
            for repeat in range(1, schedule.repeat_limit + 1)
        ]
    return stages


def due_stage(
    offsets: list[int], due_date: date, today: date, sent_up_to: int | None
) -> int | None:
    """The latest stage due by `today` unless it or a later one was sent: after an outage only
    the latest is sent, never a burst, and never an earlier one after a later."""
    due = [offset for offset in offsets if due_date + timedelta(days=offset) <= today]
    if not due:
        return None
    latest = max(due)
    return None if sent_up_to is not None and sent_up_to >= latest else latest


def in_quiet_hours(local: time, quiet: QuietHours | None) -> bool:
    """Whether a local time falls in the account's quiet hours (which may wrap midnight)."""
    if quiet is None or quiet.start == quiet.end:
        return False
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end


def header_value(value: str) -> str:
    """A header value no input can break: control characters (CR, LF, NUL...) become spaces."""
    return "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in value).strip()


def message_id_for(event_id: UUID, domain: str) -> str:
    """The Message-ID of the email an event causes: the same event, the same id, always."""
    return f"<{event_id}@{domain}>"


def money(amount: Decimal, currency: str) -> str:
    """An amount as an invoice prints it: the currency's minor unit (JPY 0, EUR 2, BHD 3)."""
    exponent = Currency(currency).exponent or 0
    return f"{amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)} {currency}"


def plain_number(value: Decimal) -> str:
    """A quantity or unit price without trailing zeros (2.5000 -> 2.5), never in exponent form."""
    stripped = value.normalize()
    return f"{stripped.quantize(Decimal(1)) if stripped == stripped.to_integral() else stripped}"
