"""Credentials and the caller they identify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import ARRAY, DateTime, Index, String
from sqlmodel import Field

from billing.accounts.domain import Role
from billing.auth.passwords import Password
from billing.auth.scopes import ApiKeyScope
from billing.database import BillingTable, created_at_column
from billing.errors import PermissionDeniedError
from billing.schemas import Schema
from billing.staff_access.domain import StaffRole
from shared.idempotency import ShownOnce
from shared.input_types import EmailAddress, Name

TotpCode = Annotated[
    str, pydantic.Field(pattern=r"^[0-9]{6}$", description="The second factor's current code.")
]


class Reauthentication(Schema):
    """A sensitive change, confirmed by the password and, when a second factor is on, a code."""

    password: str = pydantic.Field(
        min_length=1,
        max_length=128,
        description="Your password.",
        json_schema_extra={"writeOnly": True},
    )
    code: TotpCode | None = None


class ApiKey(BillingTable, table=True):
    """A bearer credential of a user or a staff member; only its hash is kept."""

    __tablename__ = "api_key"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    key_hash: str = Field(unique=True)
    name: str | None = Field(default=None)
    # None: everything its user may do (the key made when the account opens, staff keys).
    scopes: list[str] | None = Field(default=None, sa_type=ARRAY(String))
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    account_id: UUID | None = Field(default=None, foreign_key="account.id", index=True)
    user_id: UUID | None = Field(default=None, foreign_key="app_user.id", index=True)
    staff_id: UUID | None = Field(default=None, foreign_key="staff_member.id")
    # Set on a third party's key (INTEGRATIONS): its reads are recorded as data accesses.
    integration_id: UUID | None = Field(default=None, foreign_key="integration.id", index=True)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class WebSession(BillingTable, table=True):
    """A signed-in browser: its only trace there is one cookie holding a random id (COOKIES).

    Only the id's hash is kept, so a copy of this table signs nobody in.
    """

    __tablename__ = "web_session"
    __table_args__ = (Index("ix_web_session_sweep", "account_id", "last_seen_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    token_hash: str = Field(unique=True)
    csrf_hash: str
    account_id: UUID | None = Field(default=None, foreign_key="account.id", index=True)
    user_id: UUID | None = Field(default=None, foreign_key="app_user.id", index=True)
    # A staff member's session: no account's, whichever accounts they read under grants.
    staff_id: UUID | None = Field(default=None, foreign_key="staff_member.id", index=True)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    last_seen_at: datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    ended_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Request metadata, for security and administration only (COLLECTED).
    ip_address: str | None = Field(default=None)
    browser: str | None = Field(default=None)
    operating_system: str | None = Field(default=None)
    referrer: str | None = Field(default=None)
    location: str | None = Field(default=None)  # city and country, when GeoIP is configured


class UserRecoveryCode(BillingTable, table=True):
    """A single-use code that stands in for the second factor; only its hash is kept."""

    __tablename__ = "user_recovery_code"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    user_id: UUID = Field(foreign_key="app_user.id", index=True)
    code_hash: str
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class SignInFailure(BillingTable, table=True):
    """A failed sign-in, counted to throttle guessing per user and per address."""

    __tablename__ = "sign_in_failure"
    __table_args__ = (Index("ix_sign_in_failure_sweep", "account_id", "created_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    # The account and user the address named, when it named one (a purge then takes them).
    account_id: UUID | None = Field(default=None, foreign_key="account.id", index=True)
    user_id: UUID | None = Field(default=None, foreign_key="app_user.id", index=True)
    staff_id: UUID | None = Field(default=None, foreign_key="staff_member.id", index=True)
    address: str | None = Field(default=None, index=True)  # None: a failed re-authentication
    email_digest: str | None = Field(default=None, index=True)  # the email tried, hashed
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of an account, or a staff member."""

    kind: Literal["user", "staff"]
    name: str
    account_id: UUID | None = None
    user_id: UUID | None = None
    role: Role | None = None
    staff_id: UUID | None = None
    staff_roles: frozenset[StaffRole] = frozenset()
    session_id: UUID | None = None  # signed in with the cookie, not an API key
    scopes: frozenset[str] | None = None  # an API key limited to these; None: the user's all
    read_only: bool = False  # the account is terminated: reads only, until its purge
    integration_id: UUID | None = None  # a third party's key: every read is recorded

    def require_user(self) -> UUID:
        """The caller's account id, if the caller is a user (the route's policy checked roles)."""
        if self.kind != "user" or self.account_id is None:
            raise PermissionDeniedError("only users of an account may do this")
        return self.account_id

    def require_staff(self) -> UUID:
        """The caller's staff id, if the caller is a staff member."""
        if self.kind != "staff" or self.staff_id is None:
            raise PermissionDeniedError("only staff members read through this route")
        return self.staff_id


class SignInRequest(Schema):
    """Sign in with an email and a password."""

    email: EmailAddress = pydantic.Field(description="The user's email.")
    # Checked, not judged: a password chosen before a rule changed still signs in.
    password: str = pydantic.Field(
        min_length=1, max_length=128, json_schema_extra={"writeOnly": True}
    )
    account_id: UUID | None = pydantic.Field(
        default=None, description="Needed only when the email names users of several accounts."
    )
    code: TotpCode | None = None
    recovery_code: str | None = pydantic.Field(
        default=None,
        max_length=20,
        description="A recovery code instead of the second factor's code (each works once).",
        json_schema_extra={"writeOnly": True},
    )


class SessionPublic(Schema, ShownOnce):
    """The signed-in session: send `csrf_token` as `X-CSRF-Token` with every change."""

    user_id: UUID
    account_id: UUID
    role: Role
    csrf_token: str
    expires_at: datetime | None = None


class StaffSessionPublic(Schema, ShownOnce):
    """A staff member's signed-in session: send `csrf_token` as `X-CSRF-Token` with changes."""

    staff_id: UUID
    name: str = pydantic.Field(description="The staff member's name, as the audit trail shows it.")
    roles: list[StaffRole]
    csrf_token: str
    expires_at: datetime | None = None


class PasswordChange(Schema):
    """A new password; the current one is needed when there is one. Every session ends."""

    current_password: str | None = pydantic.Field(
        default=None, max_length=128, json_schema_extra={"writeOnly": True}
    )
    new_password: Password


class ApiKeyCreate(Schema):
    """A key for a script or an integration: what it may do, and until when."""

    name: Name = pydantic.Field(description="What the key is for, to recognise it later.")
    scopes: list[ApiKeyScope] = pydantic.Field(
        min_length=1,
        max_length=len(ApiKeyScope),
        description="What the key may read or change; it never exceeds its user's role.",
    )
    expires_at: datetime | None = pydantic.Field(
        default=None, description="When the key stops working; none: until revoked."
    )

    @pydantic.field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, expires_at: datetime | None) -> datetime | None:
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return expires_at


class ApiKeyPublic(Schema):
    """A key as its list shows it: never the key itself."""

    id: UUID
    name: str | None
    scopes: list[str] | None
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime | None
    revoked_at: datetime | None


class ApiKeyMade(ApiKeyPublic, ShownOnce):
    """A new key: the secret is shown this once, only its hash is kept."""

    api_key: str = pydantic.Field(description="Bearer token; only its hash is stored.")


class SessionListed(Schema):
    """A signed-in session as the account's owner and admins see it."""

    id: UUID
    user_id: UUID | None
    created_at: datetime | None
    last_seen_at: datetime
    expires_at: datetime
    ip_address: str | None
    browser: str | None
    operating_system: str | None
    referrer: str | None
    location: str | None = pydantic.Field(
        description="City and country of the address, when a GeoIP database is configured."
    )


class SecondFactorStarted(Schema, ShownOnce):
    """A second factor being set up: scan the URI (or type the secret), then confirm a code."""

    secret: str
    otpauth_uri: str


class SecondFactorConfirmation(Schema):
    """A code from the authenticator, proving it holds the secret."""

    code: TotpCode


class RecoveryCodes(Schema, ShownOnce):
    """Single-use codes for when the authenticator is lost; shown this once."""

    recovery_codes: list[str]


class PasswordConfirmation(Schema):
    """The user's password, confirming a sensitive change."""

    password: str = pydantic.Field(
        min_length=1, max_length=128, json_schema_extra={"writeOnly": True}
    )
