"""Audit's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from sqlalchemy import Column, DateTime, UniqueConstraint, func
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class AuditTable(SQLModel, registry=registry()):
    """Base of audit's tables; its metadata is audit's alone."""


class AccessLogEntry(AuditTable, table=True):
    """One access to customer data, chained to the account's previous entry by hash."""

    __tablename__ = "access_log_entry"
    __table_args__ = (UniqueConstraint("account_id", "sequence"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(index=True)
    sequence: int
    event_id: UUID = Field(unique=True)
    access_id: UUID
    actor: str
    actor_id: str
    actor_name: str
    purpose: str
    reason: str
    grant_id: UUID | None = None
    outcome: str = Field(default="granted")
    resource_type: str
    resource_id: str
    accessed_at: datetime = Field(sa_type=DateTime(timezone=True))
    previous_hash: str
    entry_hash: str
    recorded_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )

    HASHED_FIELDS: ClassVar[tuple[str, ...]] = (
        "account_id",
        "sequence",
        "event_id",
        "access_id",
        "actor",
        "actor_id",
        "actor_name",
        "purpose",
        "reason",
        "grant_id",
        "outcome",
        "resource_type",
        "resource_id",
        "accessed_at",
    )

    def hashed_fields(self) -> dict[str, Any]:
        """The fields the chain hash covers, in JSON form."""
        return self.model_dump(mode="json", include=set(self.HASHED_FIELDS))
