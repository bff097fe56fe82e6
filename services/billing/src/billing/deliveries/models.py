"""The account's email delivery log: what notifications sent, deferred, bounced or held back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from sqlalchemy import DateTime, Index
from sqlmodel import Field

from billing.database import BillingTable
from billing.schemas import Schema


class EmailOutcome(StrEnum):
    """Where an email stands, as notifications last said."""

    DEFERRED = "deferred"  # a temporary failure; notifications tries again
    SENT = "sent"
    BOUNCED = "bounced"  # refused for good: mail to the address stops until it is corrected
    SUPPRESSED = "suppressed"  # not sent: the address bounced before
    CANCELLED = "cancelled"  # not sent: what it was about ended (a reminder of a paid invoice)


class EmailDelivery(BillingTable, table=True):
    """One email's latest status, from `email.status_changed`."""

    __tablename__ = "email_delivery"
    __table_args__ = (Index("ix_email_delivery_sweep", "account_id", "changed_at"),)

    email_id: UUID = Field(primary_key=True)
    account_id: UUID = Field(foreign_key="account.id")
    message_id: str
    kind: str
    recipient: str
    status: str
    attempts: int
    reason: str | None = None
    document_id: UUID | None = None
    changed_at: datetime = Field(sa_type=DateTime(timezone=True))


class EmailDeliveryPublic(Schema):
    """An email as the delivery log shows it (never its content)."""

    email_id: UUID
    message_id: str
    kind: str
    recipient: str
    status: str
    attempts: int
    reason: str | None
    document_id: UUID | None
    changed_at: datetime
