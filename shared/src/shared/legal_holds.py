"""Legal holds as every service knows them (LAW): a table beside the outbox and inbox, kept from
billing's `legal_hold.*` events, and the guard the participant kit's purge asks.

Billing, where holds are placed, writes the same table in the placing transaction; the other
services learn of a hold from its event. A hold stands until released or past its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Column, ColumnElement, DateTime, and_, delete, or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import Envelope, LegalHoldPlaced, LegalHoldReleased
from shared.delivery import DeliveryTable
from shared.routing import EventRoutes
from shared.unit_of_work import Work

HoldEvent = Envelope[LegalHoldPlaced] | Envelope[LegalHoldReleased]
HoldHook = Callable[[HoldEvent, Work], Awaitable[None]]


class LegalHoldMark(DeliveryTable, table=True):
    """That an account is on hold, from when, until when; no reason or name is copied here."""

    __tablename__ = "legal_hold"

    hold_id: UUID = Field(primary_key=True)
    account_id: UUID = Field(index=True)
    placed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ends_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    released_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


def _standing(account_id: UUID, now: datetime) -> ColumnElement[bool]:
    return and_(
        col(LegalHoldMark.account_id) == account_id,
        col(LegalHoldMark.released_at).is_(None),
        or_(col(LegalHoldMark.ends_at).is_(None), col(LegalHoldMark.ends_at) > now),
    )


async def note_placed(session: AsyncSession, placed: LegalHoldPlaced) -> None:
    """Record a hold; a release seen first (another topic) is kept, not undone."""
    await session.exec(
        insert(LegalHoldMark)
        .values(
            hold_id=placed.hold_id,
            account_id=placed.account_id,
            placed_at=placed.placed_at,
            ends_at=placed.ends_at,
        )
        .on_conflict_do_update(
            index_elements=["hold_id"],
            set_={"placed_at": placed.placed_at, "ends_at": placed.ends_at},
        )
    )


async def note_released(session: AsyncSession, released: LegalHoldReleased) -> None:
    """Record a release, even one that overtook its hold."""
    await session.exec(
        insert(LegalHoldMark)
        .values(
            hold_id=released.hold_id,
            account_id=released.account_id,
            placed_at=released.released_at,
            released_at=released.released_at,
        )
        .on_conflict_do_update(
            index_elements=["hold_id"], set_={"released_at": released.released_at}
        )
    )


async def standing_holds(
    session: AsyncSession, account_id: UUID, now: datetime | None = None
) -> list[UUID]:
    """The holds on the account that stand now."""
    result = await session.exec(
        select(LegalHoldMark.hold_id).where(_standing(account_id, now or datetime.now(UTC)))
    )
    return list(result.all())


async def forget_holds(session: AsyncSession, account_id: UUID) -> int:
    """Delete the account's hold marks (none stands: the purge passed the guard)."""
    connection = await session.connection()
    result = await connection.execute(
        delete(LegalHoldMark).where(col(LegalHoldMark.account_id) == account_id)
    )
    return int(result.rowcount or 0)


class LegalHolds:
    """The purge guard of the participant kit: a standing hold blocks every purge."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def purge_blocked(self, account_id: UUID) -> str | None:
        """Why the account must not be purged now, or None."""
        async with AsyncSession(self.engine) as session:
            holds = await standing_holds(session, account_id)
        if not holds:
            return None
        return f"{len(holds)} legal hold(s) stand on the account: {', '.join(map(str, holds))}"

    @staticmethod
    def register(routes: EventRoutes, *, then: HoldHook | None = None) -> None:
        """Keep the table from billing's events; `then` is the service's own part (audit's
        record of the act), run in the same unit of work."""

        @routes.on(LegalHoldPlaced)
        async def on_legal_hold_placed(event: Envelope[LegalHoldPlaced], work: Work) -> None:
            """Nothing of the account is purged while this stands."""
            await note_placed(work.session, event.data)
            if then is not None:
                await then(event, work)

        @routes.on(LegalHoldReleased)
        async def on_legal_hold_released(event: Envelope[LegalHoldReleased], work: Work) -> None:
            """This hold no longer blocks a purge."""
            await note_released(work.session, event.data)
            if then is not None:
                await then(event, work)
