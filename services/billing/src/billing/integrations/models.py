"""Integrations: tables and API schemas."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import ARRAY, DateTime, String
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from shared.idempotency import ShownOnce
from shared.input_types import Name

MAX_INTEGRATIONS_PER_ACCOUNT = 20


class IntegrationScope(StrEnum):
    """What a third party may be let in to: the account's records, never its people or keys."""

    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    INVOICES_READ = "invoices:read"
    INVOICES_WRITE = "invoices:write"
    CREDIT_NOTES_READ = "credit-notes:read"
    CREDIT_NOTES_WRITE = "credit-notes:write"
    STATEMENTS_READ = "statements:read"
    PAYMENTS_READ = "payments:read"


class Integration(BillingTable, table=True):
    """A third party the account let in: its name, its scopes, who enabled it, and when it was
    revoked. Its credential is an API key that names it (api_key.integration_id)."""

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    name: str
    scopes: list[str] = Field(sa_type=ARRAY(String))
    enabled_by_user_id: UUID | None = Field(default=None, foreign_key="app_user.id", index=True)
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class IntegrationCreate(Schema):
    """Let a third party in, limited to scopes; off until this, revocable at once."""

    name: Name = pydantic.Field(description="Who the third party is, as the audit trail names it.")
    scopes: list[IntegrationScope] = pydantic.Field(
        min_length=1,
        max_length=len(IntegrationScope),
        description="What it may read or change; every read is recorded as a data access.",
    )


class IntegrationPublic(Schema):
    """An integration as the API shows it."""

    id: UUID
    name: str
    scopes: list[str]
    enabled_by_user_id: UUID | None
    created_at: datetime | None
    revoked_at: datetime | None


class IntegrationEnabled(Schema, ShownOnce):
    """The integration and the API key to hand to the third party, shown this once."""

    integration: IntegrationPublic
    api_key: str = pydantic.Field(description="The third party's credential; shown once.")
