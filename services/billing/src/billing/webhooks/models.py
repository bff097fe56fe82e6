"""Webhook endpoints and their deliveries: tables and API schemas."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID, uuid4

import pydantic
from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from billing.database import BillingTable, created_at_column
from billing.schemas import Schema
from billing.webhooks.domain import WEBHOOK_EVENT_TYPES, WebhookEventType
from shared.idempotency import ShownOnce
from shared.input_types import Description

MAX_ENDPOINTS_PER_ACCOUNT = 10


class WebhookEndpoint(BillingTable, table=True):
    """An address of the account's where billing events are sent, signed with its secret."""

    __tablename__ = "webhook_endpoint"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    url: str
    description: str | None = None
    event_types: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    # Sealed with the account's data key: the purge's key destruction makes them unreadable.
    secret_sealed: str
    previous_secret_sealed: str | None = None  # still signs until it expires (rotation)
    previous_secret_expires_at: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True)
    )
    created_by_user_id: UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())
    disabled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DeliveryStatus(StrEnum):
    """Where a delivery is: waiting to be (re)tried, or done one way or another."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # refused for good (a 4xx other than 429, a redirect, a private address)
    DEAD = "dead"  # every try failed: a dead letter, until redelivered by hand
    CANCELLED = "cancelled"  # the endpoint was removed or the account terminated


class WebhookDelivery(BillingTable, table=True):
    """One event for one endpoint: its body (no personal data) and its attempts."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_delivery_sweep", "account_id", "created_at"),  # the plan's sweep
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(foreign_key="account.id", index=True)
    endpoint_id: UUID = Field(foreign_key="webhook_endpoint.id", index=True)
    event_id: UUID  # the billing event's id: the same on every try and redelivery
    event_type: str
    body: str
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=DateTime(timezone=True))
    last_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime | None = Field(default=None, sa_column=created_at_column())


WEBHOOK_URL_PATTERN = r"^https?://[^\s/?#@]+(?:/[^\s#]*)?$"


class EndpointCreate(Schema):
    """Register an endpoint; its signing secret is shown once, in the answer."""

    url: Annotated[str, pydantic.StringConstraints(max_length=2000)] = pydantic.Field(
        pattern=WEBHOOK_URL_PATTERN,
        description="https URL (http only where the server allows it); no credentials in it. "
        "Addresses in private, loopback or link-local ranges are refused (SSRF).",
    )
    event_types: list[WebhookEventType] = pydantic.Field(
        min_length=1,
        max_length=len(WEBHOOK_EVENT_TYPES),
        description="Which events to send.",
    )
    description: Description | None = pydantic.Field(default=None, description="What it is.")


class EndpointPublic(Schema):
    """An endpoint as the API shows it (never its secret)."""

    id: UUID
    url: str
    description: str | None
    event_types: list[str]
    created_at: datetime | None
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None = pydantic.Field(
        description="Until then, deliveries are signed with the old secret too."
    )


class EndpointWithSecret(Schema, ShownOnce):
    """An endpoint and its signing secret, shown this once."""

    endpoint: EndpointPublic
    secret: str = pydantic.Field(description="Verify signatures with it; shown once.")


class DeliveryPublic(Schema):
    """One delivery in the log: the body sent (no personal data) and how it went."""

    id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type: str
    body: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime | None
