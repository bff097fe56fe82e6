"""Staff members and the grants that let them read an account's data: tables and schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

import pydantic
from pydantic import field_validator
from sqlalchemy import ARRAY, DateTime, Index, String, func, text
from sqlmodel import Field

from billing.auth.passwords import Password
from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from billing.staff_access.domain import StaffRole
from shared.contracts import AccessPurpose
from shared.idempotency import ShownOnce
from shared.input_types import EmailAddress, Name, Reference


class StaffMember(BillingTable, table=True):
    """A named Quittance employee with roles, who may read customer data under a grant."""

    __tablename__ = "staff_member"
    # One staff member per address whatever its case (migration 0012).
    __table_args__ = (Index("staff_member_email_key", func.lower(text("email")), unique=True),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    email: str
    roles: list[str] = Field(default_factory=list, sa_type=ARRAY(String))
    # Argon2id; None until they enrol with the one-time code a security admin gave them.
    password_hash: str | None = Field(default=None)
    enrolment_hash: str | None = Field(default=None, unique=True)
    enrolment_expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    # A removed staff member keeps their row (grants and the audit trail name them), no way in.
    removed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AccessGrant(BillingTable, table=True):
    """Permission for one staff member to read one account's data, for a purpose, until expiry."""

    __tablename__ = "access_grant"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    staff_id: UUID = Field(foreign_key="staff_member.id")
    purpose: AccessPurpose
    reason: str
    granted_by_user_id: UUID = Field(foreign_key="app_user.id", index=True)
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


StaffRoles = Annotated[
    list[StaffRole],
    pydantic.Field(min_length=1, max_length=len(StaffRole), description="What they do."),
]


class StaffCreate(Schema):
    """Add a staff member (a security admin does): they enrol with the code it answers."""

    name: Name = pydantic.Field(description="Full name.")
    email: EmailAddress = pydantic.Field(description="Work email: they sign in with it.")
    roles: StaffRoles


class StaffRolesChange(Schema):
    """Give a staff member other roles."""

    roles: StaffRoles


class StaffPublic(Schema):
    """A staff member as the API shows it."""

    id: UUID
    name: str
    email: str
    roles: list[StaffRole]
    enrolled: bool = pydantic.Field(description="Whether they chose their password.")


class StaffRegistered(Schema, ShownOnce):
    """The staff member, and the one-time code they enrol with (shown once: hand it over)."""

    staff: StaffPublic
    enrolment_code: str
    enrolment_expires_at: datetime


class StaffEnrolment(Schema):
    """Choose your password with the code a security admin gave you."""

    email: EmailAddress
    code: str = pydantic.Field(min_length=1, max_length=200, description="The enrolment code.")
    password: Password


class StaffSignIn(Schema):
    """A staff member signs in with their work email and password."""

    email: EmailAddress
    password: str = pydantic.Field(
        min_length=1, max_length=128, json_schema_extra={"writeOnly": True}
    )


class AccessGrantCreate(Schema):
    """Let a named staff member read this account's data for a purpose, until expiry."""

    staff_id: UUID = pydantic.Field(description="Who may read.")
    purpose: AccessPurpose = pydantic.Field(description="Why, from the closed list.")
    reason: Reference = pydantic.Field(description="Ticket or reason.")
    expires_at: datetime = pydantic.Field(description="When the grant lapses (timezone required).")

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a timezone")
        return value


class AccessGrantPublic(Schema):
    """An access grant as the API shows it."""

    id: UUID
    account_id: UUID
    staff_id: UUID
    purpose: AccessPurpose
    reason: str
    expires_at: datetime
    revoked_at: datetime | None
