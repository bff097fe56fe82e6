"""The idempotent inbox: a consumer claims an event id in the transaction of its effect."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
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


_CLAIM_MANY = text(
    "INSERT INTO inbox_message (consumer, event_id) "
    "SELECT :consumer, unnest(CAST(:event_ids AS uuid[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)


async def claim_events(session: AsyncSession, *, consumer: str, event_ids: list[UUID]) -> set[UUID]:
    """Record many events as handled by consumer in one statement; the ones that were not yet
    (a redelivered one, or the second copy of one, is left out)."""
    connection = await session.connection()
    result = await connection.execute(_CLAIM_MANY, {"consumer": consumer, "event_ids": event_ids})
    return {row[0] for row in result.all()}


_PRUNE = text(
    "DELETE FROM inbox_message WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM inbox_message WHERE handled_at < now() - make_interval(secs => :age) "
    "LIMIT :limit))"
)


async def prune_inbox(engine: AsyncEngine, *, older_than_s: float, batch: int = 5000) -> int:
    """Forget handled events older than the window, in small batches; return how many.

    The window must outlast the topics' retention: an event can only come back while the
    broker still holds it, so an older claim guards nothing.
    """
    pruned = 0
    while True:
        async with engine.begin() as connection:
            result = await connection.execute(_PRUNE, {"age": older_than_s, "limit": batch})
        pruned += int(result.rowcount or 0)
        if (result.rowcount or 0) < batch:
            return pruned
