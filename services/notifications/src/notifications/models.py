"""Notifications' tables."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import Column, DateTime, LargeBinary, func
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from notifications.domain import EmailStatus, MessageKind


class NotificationsTable(SQLModel, registry=registry()):
    """Base of notifications' tables; its metadata is notifications' alone."""


class OutgoingEmail(NotificationsTable, table=True):
    """An email an event caused: queued with its MIME bytes, which are dropped once sent."""

    __tablename__ = "outgoing_email"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(index=True)
    kind: MessageKind
    message_id: str = Field(unique=True)
    recipient: str
    subject: str
    status: EmailStatus = Field(default=EmailStatus.QUEUED, index=True)
    mime: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    saga_id: UUID | None = Field(default=None, index=True)
    attachment_transfer_id: UUID | None = Field(
        default=None, index=True, description="The bundle's chunks this email waits for, if any."
    )
    attachment_chunks: int | None = None
    attachment_name: str | None = None
    attachment_sha256: str | None = None
    attempts: int = Field(default=0)
    last_error: str | None = None
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
