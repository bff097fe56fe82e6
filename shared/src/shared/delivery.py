"""The outbox and inbox tables, in their own metadata that every service's migrations include."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Identity, LargeBinary, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class DeliveryTable(SQLModel, registry=registry()):
    """Base of the delivery tables; its metadata joins each service's own."""


class OutboxMessage(DeliveryTable, table=True):
    """An event written with the state change that caused it, waiting for the relay."""

    __tablename__ = "outbox_message"

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


class InboxMessage(DeliveryTable, table=True):
    """An event a consumer has handled; written in the same transaction as the effect."""

    __tablename__ = "inbox_message"

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
