"""Staff members and the grants that let them read an account's data: tables and schemas."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import pydantic
from pydantic import field_validator
from sqlalchemy import DateTime
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from shared.contracts import AccessPurpose
from shared.input_types import EmailAddress, Name, Reference


class StaffMember(BillingTable, table=True):
    """A named Quittance employee who may read customer data under a grant."""

    __tablename__ = "staff_member"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str
    email: str = Field(unique=True)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


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


class StaffCreate(Schema):
    """Register a staff member (operator only)."""

    name: Name = pydantic.Field(description="Full name.")
    email: EmailAddress = pydantic.Field(description="Work email.")


class StaffPublic(Schema):
    """A staff member as the API shows it."""

    id: UUID
    name: str
    email: str


class StaffRegistered(Schema):
    """The staff member and their API key (shown once)."""

    staff: StaffPublic
    api_key: str


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
