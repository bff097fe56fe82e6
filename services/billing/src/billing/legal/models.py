"""Legal holds and disclosures: billing's record of each (who, on which basis, why) and schemas."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import pydantic
from pydantic import field_validator
from sqlalchemy import DateTime
from sqlmodel import Field

from billing.database import BillingTable
from billing.schemas import Schema
from shared.input_types import Name, Reference, SafeText


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


class LegalDisclosure(BillingTable, table=True):
    """Customer data given to an outside party because the law required it (LAW): what, to
    whom, under which basis, by whom. Each is also a data access in the audit trail."""

    __tablename__ = "legal_disclosure"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(index=True)
    legal_basis: str
    recipient: str
    what: str
    disclosed_by: UUID
    disclosed_at: datetime = Field(sa_type=DateTime(timezone=True))


class LegalDisclosureCreate(Schema):
    """Record a legal disclosure of an account's data (legal staff)."""

    account_id: UUID = pydantic.Field(description="Whose data was given.")
    legal_basis: Reference = pydantic.Field(
        description="The law, court order or authority's request that required it."
    )
    recipient: Name = pydantic.Field(description="To whom: the court, authority or officer.")
    what: SafeText = pydantic.Field(min_length=1, description="What was given.")
    disclosed_at: datetime | None = pydantic.Field(
        default=None, description="When it was given (timezone required); default: now."
    )

    @field_validator("disclosed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a timezone")
        return value


class LegalDisclosurePublic(Schema):
    """A legal disclosure as the API shows it to legal staff."""

    id: UUID
    account_id: UUID
    legal_basis: str
    recipient: str
    what: str
    disclosed_by: UUID
    disclosed_at: datetime
