"""Accounts (the customer companies) and their users: tables and API schemas."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import BigInteger, DateTime, Index, UniqueConstraint, text
from sqlmodel import Field

from billing.accounts.domain import AccountStatus, Role, UserStatus
from billing.auth.models import Reauthentication
from billing.auth.passwords import Password
from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from shared.input_types import EmailAddress, Name


class Account(BillingTable, table=True):
    """A customer company: the tenant every other row belongs to."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    plan: str
    status: AccountStatus = Field(default=AccountStatus.ACTIVE)
    next_invoice_number: int = Field(default=1)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    terminated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AppUser(BillingTable, table=True):
    """A person who uses an account."""

    __tablename__ = "app_user"
    __table_args__ = (
        UniqueConstraint("account_id", "email"),
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
        default="standard", pattern="^(free|standard|enterprise)$", description="Subscription plan."
    )
    owner: OwnerCreate = pydantic.Field(description="The first user, with the owner role.")


class TerminationRequest(Reauthentication):
    """End the contract; the owner confirms with their password (and second factor code)."""


class AccountPublic(Schema):
    """An account as the API shows it."""

    id: UUID
    name: str
    plan: str
    status: AccountStatus
    created_at: datetime | None
    terminated_at: datetime | None


class UserPublic(Schema):
    """A user as the API shows it."""

    id: UUID
    name: str
    email: str
    role: Role


class AccountOpened(Schema):
    """The new account, its owner, and the owner's API key (shown once)."""

    account: AccountPublic
    owner: UserPublic
    api_key: str = pydantic.Field(description="Bearer token; only its hash is stored.")
