"""Accounts (the customer companies) and their users: tables and API schemas."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from functools import cache
from typing import Annotated, Any, ClassVar
from uuid import UUID, uuid4

import pydantic
from pydantic import AfterValidator
from sqlalchemy import BigInteger, Column, DateTime, Index, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from billing.accounts.domain import PLANS, AccountStatus, Role, UserStatus
from billing.auth.models import Reauthentication, TotpCode
from billing.auth.passwords import Password
from billing.database import BillingTable, created_at_column
from billing.invoices.domain import DEFAULT_TERMS_DAYS
from billing.invoices.models import CurrencyCode, TermsDays
from billing.schemas import Patch, Schema, optional
from shared.contracts import MAIL_LANGUAGES
from shared.idempotency import ShownOnce
from shared.input_types import EmailAddress, Name, SafeText, TaxId


@cache
def time_zones() -> list[str]:
    """Every IANA time zone name the API accepts, sorted (from the tzdata package)."""
    return sorted(zoneinfo.available_timezones())


def _time_zone(name: str) -> str:
    if name not in time_zones():
        raise ValueError("must be an IANA time zone name, such as Europe/Paris or UTC")
    return name


TimeZoneName = Annotated[
    str,
    pydantic.Field(
        max_length=64,
        description="IANA time zone: invoices are dated in it.",
        json_schema_extra={"enum": time_zones()},
    ),
    AfterValidator(_time_zone),
]
LocaleCode = Annotated[
    str,
    pydantic.Field(
        pattern=f"^({'|'.join(MAIL_LANGUAGES)})(-[A-Z]{{2}})?$",
        description="The language mail is written in and an optional region, such as fr or "
        f"en-GB: {', '.join(MAIL_LANGUAGES)}.",
    ),
]


LOGO_URL_PATTERN = r"^https://[^\s/?#@\x22\x27<>]+(?:/[^\s#\x22\x27<>]*)?$"
LogoUrl = Annotated[
    str,
    pydantic.StringConstraints(max_length=2000),
    pydantic.Field(
        pattern=LOGO_URL_PATTERN,
        description="An https address of the company's logo, shown at the top of HTML mail.",
    ),
]
LocalTime = Annotated[
    str, pydantic.Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, local.")
]
DaysBefore = Annotated[int, pydantic.Field(ge=1, le=90)]
DaysAfter = Annotated[int, pydantic.Field(ge=1, le=365)]


def _no_day_twice(days: list[int]) -> list[int]:
    if len(set(days)) != len(days):
        raise ValueError("a day appears twice")
    return days


class ReminderRepeat(Schema):
    """After the last of the days after the due date, again every N days, so many times."""

    every_days: int = pydantic.Field(ge=1, le=90, description="Every N days.")
    times: int = pydantic.Field(ge=1, le=24, description="At most this many times.")


class ReminderScheduleInput(Schema):
    """When customers are reminded of an unpaid invoice; each stage goes once per invoice. Every
    part is optional: a schedule with no stage reminds of nothing."""

    days_before_due: Annotated[list[DaysBefore], AfterValidator(_no_day_twice)] = pydantic.Field(
        default_factory=list,
        max_length=5,
        description="Days before the due date, 1 to 90, each once.",
        json_schema_extra={"uniqueItems": True},
    )
    on_due: pydantic.StrictBool = pydantic.Field(default=False, description="On the due date.")
    days_after_due: Annotated[list[DaysAfter], AfterValidator(_no_day_twice)] = pydantic.Field(
        default_factory=list,
        max_length=10,
        description="Days after the due date, 1 to 365, each once.",
        json_schema_extra={"uniqueItems": True},
    )
    repeat: ReminderRepeat | None = pydantic.Field(
        default=None, description="Then again at an interval; null: no repeats."
    )


class QuietHoursInput(Schema):
    """Hours of the account's day (its time zone) when no reminder is sent; may wrap midnight
    (21:00 to 08:00). The same start and end: no quiet hours."""

    start: LocalTime
    end: LocalTime


class Account(BillingTable, table=True):
    """A customer company: the tenant every other row belongs to."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    plan: str
    status: AccountStatus = Field(default=AccountStatus.ACTIVE)
    next_invoice_number: int = Field(default=1)
    # Billing details (RECTIFY): printed on the next invoice; issued ones keep their snapshot.
    address: str | None = None
    tax_id: str | None = None
    currency: str = Field(default="EUR", max_length=3)
    locale: str = Field(default="en")
    time_zone: str = Field(default="UTC")
    payment_terms_days: int = Field(default=DEFAULT_TERMS_DAYS)
    # Each customer with activity gets last month's statement on the first of the month.
    monthly_statements: bool = Field(default=False)
    next_credit_note_number: int = Field(default=1)
    logo_url: str | None = None
    # How customers are reminded of unpaid invoices (notifications keeps the per-invoice state).
    # none_as_null: "none" is SQL NULL, not JSON null.
    reminders: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSONB(none_as_null=True), nullable=True)
    )
    quiet_hours: dict[str, str] | None = Field(
        default=None, sa_column=Column(JSONB(none_as_null=True), nullable=True)
    )
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    terminated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AppUser(BillingTable, table=True):
    """A person who uses an account."""

    __tablename__ = "app_user"
    __table_args__ = (
        # One user per address and account whatever its case (migration 0012).
        Index(
            "app_user_account_id_email_key", "account_id", func.lower(text("email")), unique=True
        ),
        Index("ix_app_user_email_lower", func.lower(text("email"))),
        # One owner at all times: a handover demotes the owner before promoting the next.
        Index(
            "uq_app_user_one_owner",
            "account_id",
            unique=True,
            postgresql_where=text("role = 'OWNER'"),
        ),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    name: str
    email: str
    role: Role
    status: UserStatus = Field(default=UserStatus.ACTIVE)
    # Argon2id; None until the user chooses a password (API keys only until then).
    password_hash: str | None = Field(default=None)
    # The TOTP secret, sealed with the account's key; the one being set up; the last step used.
    totp_secret: str | None = Field(default=None)
    totp_pending: str | None = Field(default=None)
    totp_last_step: int | None = Field(default=None, sa_type=BigInteger)
    # The last sign-in: a sign-in from a new device is noticed even once old sessions are gone.
    signed_in_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    # A removed user keeps their row (grants and history name them) but no way in.
    removed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class OwnerCreate(Schema):
    """The person who opens the account and owns it."""

    name: Name = pydantic.Field(description="Owner's full name.")
    email: EmailAddress = pydantic.Field(
        description="Owner's email; the termination export goes here."
    )
    password: Password | None = pydantic.Field(
        default=None, description="To sign in with a browser; API keys work without one."
    )


class AccountCreate(Schema):
    """Open an account."""

    name: Name = pydantic.Field(description="Company name.")
    plan: str = pydantic.Field(
        default="standard", pattern=f"^({'|'.join(PLANS)})$", description="Subscription plan."
    )
    owner: OwnerCreate = pydantic.Field(description="The first user, with the owner role.")


class TerminationRequest(Reauthentication):
    """End the contract; the owner confirms with their password (and second factor code)."""


class AccountDetailsChange(Patch):
    """Correct the company's details; the next invoice prints them (RECTIFY)."""

    name: Name = optional("Company name.")
    address: SafeText | None = optional("Postal address, on one line; null removes it.")
    tax_id: TaxId | None = optional("Tax or VAT number; null removes it.")
    currency: CurrencyCode = optional("Currency of new invoices that name none.")
    locale: LocaleCode = optional("Language (and region) of the account's mail.")
    time_zone: TimeZoneName = optional("Time zone invoices are dated in.")
    payment_terms_days: TermsDays = optional(
        "Payment terms of new invoices that name neither a due date nor terms, in days."
    )
    monthly_statements: pydantic.StrictBool = optional(
        "Email each customer with activity last month's statement on the first of the month."
    )
    logo_url: LogoUrl | None = optional("The company's logo in HTML mail; null removes it.")
    reminders: ReminderScheduleInput | None = optional(
        "The payment reminder schedule; null: no reminders."
    )
    quiet_hours: QuietHoursInput | None = optional(
        "When no reminder is sent, in the account's time zone; null: any time."
    )


class OwnDetailsChange(Patch):
    """Correct your own name or email; a new email needs your password (RECTIFY)."""

    CONFIRMATIONS: ClassVar[frozenset[str]] = frozenset({"password", "code"})

    name: Name = optional("Your full name.")
    email: EmailAddress = optional("Your email: you sign in with it.")
    password: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Your password: needed to change your email.",
        json_schema_extra={"writeOnly": True},
    )
    code: TotpCode | None = None


class AccountPublic(Schema):
    """An account as the API shows it."""

    id: UUID
    name: str
    plan: str
    status: AccountStatus
    address: str | None
    tax_id: str | None
    currency: str
    locale: str
    time_zone: str
    payment_terms_days: int
    monthly_statements: bool
    logo_url: str | None
    reminders: ReminderScheduleInput | None
    quiet_hours: QuietHoursInput | None
    created_at: datetime | None
    terminated_at: datetime | None


class UserPublic(Schema):
    """A user as the API shows it."""

    id: UUID
    name: str
    email: str
    role: Role


class AccountOpened(Schema, ShownOnce):
    """The new account, its owner, and the owner's API key (shown once)."""

    account: AccountPublic
    owner: UserPublic
    api_key: str = pydantic.Field(description="Bearer token; only its hash is stored.")
