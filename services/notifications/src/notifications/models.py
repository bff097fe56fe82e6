"""Notifications' tables."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, Numeric, func, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from notifications.domain import EmailStatus, MessageKind, ReminderState


class NotificationsTable(SQLModel, registry=registry()):
    """Base of notifications' tables; its metadata is notifications' alone."""


class OutgoingEmail(NotificationsTable, table=True):
    """An email an event caused: queued with its MIME bytes, which are dropped once it leaves
    the queue (sent, bounced, suppressed or cancelled)."""

    __tablename__ = "outgoing_email"
    __table_args__ = (
        # The sweeper's query: what is queued and due for an attempt.
        Index(
            "ix_outgoing_email_queued_due",
            "next_attempt_at",
            postgresql_where=text("status = 'QUEUED'"),
        ),
        Index("ix_outgoing_email_sweep", "account_id", "created_at"),  # the plan's sweep
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(index=True)
    kind: MessageKind
    message_id: str = Field(unique=True)
    recipient: str
    subject: str
    status: EmailStatus = Field(default=EmailStatus.QUEUED, index=True)
    mime: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    saga_id: UUID | None = Field(default=None, index=True)
    document_id: UUID | None = Field(
        default=None, index=True, description="The invoice, credit note or payment it is about."
    )
    attachment_transfer_id: UUID | None = Field(
        default=None, index=True, description="The bundle's chunks this email waits for, if any."
    )
    attachment_chunks: int | None = None
    attachment_name: str | None = None
    attachment_sha256: str | None = None
    attempts: int = Field(default=0)
    last_error: str | None = None
    next_attempt_at: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True), description="Null: due now."
    )
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class BouncedAddress(NotificationsTable, table=True):
    """An address the mail server refused for good: no more mail to it for this account until
    the account corrects it (sends to another address)."""

    __tablename__ = "bounced_address"
    __table_args__ = (Index("ix_bounced_address_sweep", "account_id", "bounced_at"),)

    account_id: UUID = Field(primary_key=True)
    address: str = Field(primary_key=True, description="Lower-cased.")
    reason: str
    bounced_at: datetime = Field(sa_type=DateTime(timezone=True))


class AccountMailSettings(NotificationsTable, table=True):
    """How an account's mail reads and when its reminders go, as billing last said."""

    __tablename__ = "account_mail_settings"

    account_id: UUID = Field(primary_key=True)
    account_name: str
    locale: str
    time_zone: str
    logo_url: str | None = None
    # none_as_null: "no schedule" is SQL NULL, not JSON null, so `IS NULL` finds it.
    reminders: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    quiet_start: time | None = None
    quiet_end: time | None = None
    terminated: bool = Field(default=False)
    changed_at: datetime = Field(sa_type=DateTime(timezone=True))


class ReminderInvoice(NotificationsTable, table=True):
    """An issued invoice its customer may be reminded of, from billing's events."""

    __tablename__ = "reminder_invoice"
    __table_args__ = (
        Index("ix_reminder_invoice_open_due", "due_date", postgresql_where=text("state = 'OPEN'")),
    )

    invoice_id: UUID = Field(primary_key=True)
    account_id: UUID = Field(index=True)
    number: str
    customer_name: str
    customer_email: str
    currency: str
    total: Decimal = Field(sa_column=Column(Numeric(18, 4), nullable=False))
    credited: Decimal = Field(default=Decimal(0), sa_column=Column(Numeric(18, 4), nullable=False))
    paid: Decimal = Field(default=Decimal(0), sa_column=Column(Numeric(18, 4), nullable=False))
    due_date: date
    state: ReminderState = Field(default=ReminderState.OPEN)
    last_stage: int | None = Field(default=None, description="Days from due of the last sent.")


class ReminderSent(NotificationsTable, table=True):
    """One stage of one invoice's reminders, sent: at most once, by its primary key."""

    __tablename__ = "reminder_sent"

    invoice_id: UUID = Field(primary_key=True)
    stage: int = Field(primary_key=True, description="Days from the due date; before: negative.")
    account_id: UUID = Field(index=True)
    email_id: UUID
    sent_at: datetime = Field(sa_type=DateTime(timezone=True))


class CertificateRecipient(NotificationsTable, table=True):
    """Where an account's purge certificate goes, noted at termination. It outlives the
    purge on purpose (the only row that does) and is deleted once the certificate is sent."""

    __tablename__ = "certificate_recipient"

    account_id: UUID = Field(primary_key=True)
    address: str
    account_name: str
    locale: str = Field(default="en")
    time_zone: str = Field(default="UTC")
    noted_at: datetime = Field(sa_type=DateTime(timezone=True))
