"""The record of every correction of an account's details (RECTIFY): table and API schema."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, String
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Schema


class ChangeSubject(StrEnum):
    """What was corrected."""

    ACCOUNT = "account"  # the company and its billing details
    USER = "user"  # a user's own details
    CUSTOMER = "customer"


class ChangeRecord(BillingTable, table=True):
    """Who changed which fields of what, and when; the values themselves stay in their rows."""

    __tablename__ = "change_record"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    subject: ChangeSubject
    subject_id: UUID
    fields: list[str] = Field(sa_type=ARRAY(String))
    changed_by_user_id: UUID | None = Field(default=None, foreign_key="app_user.id", index=True)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


class ChangePublic(Schema):
    """A recorded change as the account sees it."""

    id: UUID
    subject: ChangeSubject
    subject_id: UUID
    fields: list[str]
    changed_by_user_id: UUID | None
    created_at: datetime | None
