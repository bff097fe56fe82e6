"""Credentials and the caller they identify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID, uuid4

from sqlalchemy import DateTime
from sqlmodel import Field

from billing.accounts.domain import Role
from billing.database import BillingTable, created_at_column
from billing.errors import PermissionDeniedError


class ApiKey(BillingTable, table=True):
    """A bearer credential of a user or a staff member; only its hash is kept."""

    __tablename__ = "api_key"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    key_hash: str = Field(unique=True)
    account_id: UUID | None = Field(default=None, foreign_key="account.id", index=True)
    user_id: UUID | None = Field(default=None, foreign_key="app_user.id", index=True)
    staff_id: UUID | None = Field(default=None, foreign_key="staff_member.id")
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of an account, or a staff member."""

    kind: Literal["user", "staff"]
    name: str
    account_id: UUID | None = None
    user_id: UUID | None = None
    role: Role | None = None
    staff_id: UUID | None = None

    def require_user(self, *roles: Role) -> UUID:
        """The caller's account id, if the caller is a user with one of the roles."""
        if self.kind != "user" or self.account_id is None:
            raise PermissionDeniedError("only users of an account may do this")
        if roles and self.role not in roles:
            raise PermissionDeniedError(f"needs the role {' or '.join(roles)}")
        return self.account_id

    def require_staff(self) -> UUID:
        """The caller's staff id, if the caller is a staff member."""
        if self.kind != "staff" or self.staff_id is None:
            raise PermissionDeniedError("only staff members read through this route")
        return self.staff_id
