"""The idempotent inbox: a consumer claims an event id in the transaction of its effect."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

_CLAIM = text(
    "INSERT INTO inbox_message (consumer, event_id) VALUES (:consumer, :event_id) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)


async def claim_event(session: AsyncSession, *, consumer: str, event_id: UUID) -> bool:
    """Record the event as handled by consumer; False if it already was (a redelivery)."""
    connection = await session.connection()  # raw SQL runs in the session's transaction
    result = await connection.execute(_CLAIM, {"consumer": consumer, "event_id": event_id})
    return result.scalar_one_or_none() is not None
