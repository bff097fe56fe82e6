"""How an account's mail reads, as billing tells notifications: on each document's event (a
snapshot, like the seller's name) and, for reminders and notices, as settings it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from billing.accounts.models import Account
from shared.contracts import (
    AccountMailSettingsChanged,
    MailPresentation,
    QuietHours,
    ReminderSchedule,
)

# A change of any of these is told to notifications.
MAIL_SETTINGS = frozenset({"name", "locale", "time_zone", "logo_url", "reminders", "quiet_hours"})


def mail_presentation(account: Account) -> MailPresentation:
    """The account's language, time zone and logo, for an event that causes mail."""
    return MailPresentation(
        locale=account.locale, time_zone=account.time_zone, logo_url=account.logo_url
    )


def mail_settings_changed(account: Account) -> AccountMailSettingsChanged:
    """The account's mail settings as they now are."""
    quiet = account.quiet_hours
    return AccountMailSettingsChanged(
        account_id=account.id,
        account_name=account.name,
        presentation=mail_presentation(account),
        reminders=None if account.reminders is None else _schedule(account.reminders),
        quiet_hours=None
        if quiet is None
        else QuietHours(
            start=time.fromisoformat(quiet["start"]), end=time.fromisoformat(quiet["end"])
        ),
        changed_at=datetime.now(UTC),
    )


def _schedule(stored: dict[str, Any]) -> ReminderSchedule:
    """The schedule as the account set it, in the contract's terms."""
    repeat = stored.get("repeat") or {}
    return ReminderSchedule(
        days_before_due=stored.get("days_before_due", []),
        on_due=stored.get("on_due", False),
        days_after_due=stored.get("days_after_due", []),
        repeat_every_days=repeat.get("every_days"),
        repeat_limit=repeat.get("times", 0),
    )
