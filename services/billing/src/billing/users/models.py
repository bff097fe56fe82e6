"""An account's users: invitations, roles, removal; API schemas."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import DateTime
from sqlmodel import Field

from billing.accounts.domain import Role, UserStatus
from billing.auth.models import Reauthentication
from billing.auth.passwords import Password
from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from shared.input_types import EmailAddress, Name


class UserInvitation(BillingTable, table=True):
    """An invitation to become a user; only its token's hash is kept."""

    __tablename__ = "user_invitation"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    user_id: UUID = Field(foreign_key="app_user.id", index=True)
    token_hash: str = Field(unique=True)
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    accepted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class InvitableRole(StrEnum):
    """The roles an invitation or a role change may give: the owner is made by a handover."""

    ADMIN = Role.ADMIN.value
    ACCOUNTANT = Role.ACCOUNTANT.value
    READ_ONLY = Role.READ_ONLY.value


class UserInvite(Schema):
    """Invite a colleague: they get an email and choose their password."""

    name: Name = pydantic.Field(description="Their full name.")
    email: EmailAddress = pydantic.Field(description="Where the invitation goes.")
    role: InvitableRole = pydantic.Field(description="What they may do.")


class RoleChange(Schema):
    """Give a user another role (the owner's changes only by handing the account over)."""

    role: InvitableRole


class InvitationAcceptance(Schema):
    """Accept an invitation by choosing a password."""

    token: str = pydantic.Field(
        min_length=1, max_length=200, description="The code in the invitation email."
    )
    password: Password


class OwnerHandover(Reauthentication):
    """Hand the account over to another active user; the owner re-authenticates."""

    user_id: UUID = pydantic.Field(description="The new owner; the current one becomes an admin.")


class TeamMember(Schema):
    """A user as the account's team sees them."""

    id: UUID
    name: str
    email: str
    role: Role
    status: UserStatus
