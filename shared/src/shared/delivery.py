"""The outbox and inbox tables, in their own metadata that every service's migrations include."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class DeliveryTable(SQLModel, registry=registry()):
    """Base of the delivery tables; its metadata joins each service's own."""


class OutboxMessage(DeliveryTable, table=True):
    """An event written with the state change that caused it, waiting for the relay."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        # The relay's batch query reads only rows still to publish; the acknowledged rows
        # kept for replay and the parked ones stay out of the hot path.
        Index(
            "ix_outbox_message_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
        ),
        Index("ix_outbox_message_parked", "seq", postgresql_where=text("parked_at IS NOT NULL")),
        # The relay prunes acknowledged rows once they leave the replay window.
        Index(
            "ix_outbox_message_published",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
        ),
        # A purge forgets the account's events by key.
        Index("ix_outbox_message_key", "key"),
    )

    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    event_id: UUID = Field(unique=True, description="The envelope id.")
    topic: str = Field(description="Physical topic name.")
    key: str = Field(description="Kafka key: the account id.")
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    replayable: bool = Field(
        default=True,
        sa_column=Column(Boolean, nullable=False, server_default=true()),
        description="Kept after publishing, to publish again if the broker forgets it.",
    )
    published_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True)),
        description="When the broker acknowledged it; null while it waits.",
    )
    kafka_partition: int | None = Field(
        default=None,
        sa_column=Column(Integer),
        description="The partition the broker acknowledged it on.",
    )
    kafka_offset: int | None = Field(
        default=None,
        sa_column=Column(BigInteger),
        description="The offset the broker acknowledged it at.",
    )
    parked_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True)),
        description="When the relay gave up on it: it can never be published as it is.",
    )
    park_reason: str | None = Field(
        default=None,
        sa_column=Column(Text),
        description="Why it was parked; never its content.",
    )


class InboxMessage(DeliveryTable, table=True):
    """An event a consumer has handled; written in the same transaction as the effect."""

    __tablename__ = "inbox_message"
    __table_args__ = (Index("ix_inbox_message_handled_at", "handled_at"),)  # for pruning

    consumer: str = Field(primary_key=True, description="Subscriber name.")
    event_id: UUID = Field(primary_key=True, description="The envelope id.")
    handled_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


# The relay LISTENs on this channel; a statement trigger NOTIFYs at commit, so new rows go
# out at once without a round trip in the writer's transaction.
OUTBOX_CHANNEL = "outbox_message"
CREATE_OUTBOX_NOTIFY_SQL = (
    f"""
CREATE OR REPLACE FUNCTION notify_outbox_message() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER outbox_message_notify AFTER INSERT ON outbox_message
FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox_message()
""",
)
DROP_OUTBOX_NOTIFY_SQL = (
    "DROP TRIGGER IF EXISTS outbox_message_notify ON outbox_message",
    "DROP FUNCTION IF EXISTS notify_outbox_message()",
)
