"""Legal holds: billing's record of each (who placed it, on which basis, why) and its schemas."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import pydantic
from pydantic import field_validator
from sqlalchemy import DateTime
from sqlmodel import Field

from billing.database import BillingTable
from billing.schemas import Schema
from shared.input_types import Reference, SafeText


class AccountLegalHold(BillingTable, table=True):
    """A legal hold on an account: its data is preserved, no purge passes it, until released
    or past its end. The account is not told (a hold may be confidential)."""

    __tablename__ = "account_legal_hold"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(index=True)
    legal_basis: str
    reason: str
    placed_by: UUID
    placed_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    released_by: UUID | None = None
    released_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    release_reason: str | None = None


class LegalHoldCreate(Schema):
    """Place a legal hold on an account (legal staff)."""

    account_id: UUID = pydantic.Field(description="The account whose data must be preserved.")
    legal_basis: Reference = pydantic.Field(
        description="The law, court order or authority's request that requires it."
    )
    reason: SafeText = pydantic.Field(min_length=1, description="Why, for the record.")
    ends_at: datetime | None = pydantic.Field(
        default=None, description="When it lapses by itself (timezone required); null: released."
    )

    @field_validator("ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a timezone")
        return value


class LegalHoldRelease(Schema):
    """Release a legal hold."""

    reason: SafeText = pydantic.Field(min_length=1, description="Why it no longer applies.")


class LegalHoldPublic(Schema):
    """A legal hold as the API shows it to legal staff."""

    id: UUID
    account_id: UUID
    legal_basis: str
    reason: str
    placed_by: UUID
    placed_at: datetime
    ends_at: datetime | None
    released_by: UUID | None
    released_at: datetime | None
    release_reason: str | None
