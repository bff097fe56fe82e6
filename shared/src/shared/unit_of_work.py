"""The unit of work: one transaction for a state change, the events it emits and its inbox claim."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import Envelope, EventData, new_envelope
from shared.db import SessionFactory, driver_in_transaction
from shared.inbox import claim_event, claim_events
from shared.outbox import Outbox, StagedEvent, trace_headers

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[object]]


class Work(Protocol):
    """What a handler or use case gets: a session, a way to emit events, and after-commit work."""

    @property
    def session(self) -> AsyncSession:
        """The transaction's session."""
        ...

    def emit(self, data: EventData, *, replayable: bool = True) -> Envelope[Any]:
        """Stage an event; it is written to the outbox in this transaction."""
        ...

    def after_commit(self, action: AfterCommit) -> None:
        """Run action once the transaction committed (for effects that must not precede it)."""
        ...

    async def flush(self) -> None:
        """Write the events staged so far to the outbox now (still uncommitted), freeing memory."""
        ...

    async def publish_now(self, data: Sequence[EventData]) -> list[Envelope[Any]]:
        """Publish the pieces of a bulk transfer straight to the broker, whatever the commit.

        Only for pieces that an emitted event announces once they are all out (see
        `Outbox.publish_now`): without that event, the receiver never assembles them.
        """
        ...

    async def claim(self, consumer: str, event_id: UUID) -> bool:
        """Record an event as handled by consumer; False if it already was."""
        ...

    async def claim_many(self, consumer: str, event_ids: list[UUID]) -> set[UUID]:
        """Record events as handled by consumer at once; those that were not yet."""
        ...

    async def driver(self) -> asyncpg.Connection:
        """The transaction's asyncpg connection, for hot paths that skip the ORM."""
        ...


class UnitOfWork:
    """A transaction in progress; events are staged and written to the outbox before commit.

    The transaction belongs to a connection; the ORM session joins it only when a use case
    asks for one, so a hot path in plain SQL does not pay for a session it never uses.
    """

    def __init__(
        self, connection: AsyncConnection, outbox: Outbox, sessions: SessionFactory
    ) -> None:
        self._connection = connection
        self._sessions = sessions
        self._session: AsyncSession | None = None
        self._outbox = outbox
        self._source = outbox.source
        self.staged: list[StagedEvent] = []
        self.after_commit_actions: list[AfterCommit] = []

    @property
    def session(self) -> AsyncSession:
        """The transaction's session (joining the unit's transaction, made on first use)."""
        if self._session is None:
            self._session = self._sessions(bind=self._connection)
        return self._session

    def emit(self, data: EventData, *, replayable: bool = True) -> Envelope[Any]:
        """Stage an event; it is written to the outbox in this transaction."""
        envelope = new_envelope(data, source=self._source)
        self.staged.append(StagedEvent(envelope, replayable, trace_headers()))
        return envelope

    def after_commit(self, action: AfterCommit) -> None:
        """Run action once the transaction committed (for effects that must not precede it)."""
        self.after_commit_actions.append(action)

    async def flush(self) -> None:
        """Write the events staged so far to the outbox now (still uncommitted), freeing memory."""
        await self._outbox.write(self._connection, self.staged)
        self.staged.clear()

    async def publish_now(self, data: Sequence[EventData]) -> list[Envelope[Any]]:
        """Publish the pieces of a bulk transfer straight to the broker, whatever the commit."""
        envelopes = [new_envelope(item, source=self._source) for item in data]
        await self._outbox.publish_now(envelopes)
        return envelopes

    async def claim(self, consumer: str, event_id: UUID) -> bool:
        """Record an event as handled by consumer; False if it already was."""
        return await claim_event(self.session, consumer=consumer, event_id=event_id)

    async def claim_many(self, consumer: str, event_ids: list[UUID]) -> set[UUID]:
        """Record events as handled by consumer at once; those that were not yet."""
        return await claim_events(self.session, consumer=consumer, event_ids=event_ids)

    async def driver(self) -> asyncpg.Connection:
        """The transaction's asyncpg connection, for hot paths that skip the ORM."""
        return await driver_in_transaction(self._connection)

    async def finish(self) -> None:
        """Send what is staged (ORM rows, then events) into the transaction before its commit."""
        if self._session is not None:
            await self._session.flush()
        await self.flush()

    async def close(self) -> None:
        """Let go of the session, if one was made; its objects stay readable."""
        if self._session is not None:
            await self._session.close()


class UnitsOfWork(Protocol):
    """Opens units of work; the dispatcher and every use case go through one."""

    def __call__(self) -> Any:
        """An async context manager yielding a Work."""
        ...


class UnitOfWorkFactory:
    """Opens a transaction, hands out a UnitOfWork, writes its events, commits, then runs hooks."""

    def __init__(self, *, sessions: SessionFactory, outbox: Outbox) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.engine: AsyncEngine = sessions.kw["bind"]

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work: committed on exit, rolled back (with nothing emitted) on error."""
        async with self.engine.connect() as connection, connection.begin():
            work = UnitOfWork(connection, self.outbox, self.sessions)
            try:
                yield work
                await work.finish()
            finally:
                await work.close()
        for action in work.after_commit_actions:
            try:
                await action()
            except Exception:
                # The state change is committed; after-commit work has its own way back
                # (a sweeper, a deadline, the next purge), so it must not undo the handling.
                log.exception("after-commit action failed; its sweeper will retry")
