"""Async SQLModel on asyncpg: one engine and session factory per service, built by the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel.ext.asyncio.session import AsyncSession

SessionFactory = async_sessionmaker[AsyncSession]
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 120.0
POOL_TIMEOUT_S = 10.0


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create the service's async engine."""
    # No pre-ping: it costs a round trip per checkout; connections are recycled instead, and a
    # dropped one fails its statement, which the caller's retry (HTTP client, consumer) repeats.
    return create_async_engine(
        url,
        pool_size=pool_size,
        # No overflow: an overflow connection is closed when it is returned, so a burst paid
        # for a new connection, its type introspection and its statements on every checkout
        # (a third of billing's time under load); a burst waits for a pooled one instead.
        max_overflow=0,
        pool_recycle=1800,
        pool_pre_ping=False,
        hide_parameters=True,  # errors and logs must never carry the personal data in a query
        pool_timeout=POOL_TIMEOUT_S,
        # A database that stops answering must fail requests, not hang them: asyncpg waits
        # forever by default. Long bulk statements (an export's COPY) pass their own timeout.
        connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S},
    )


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Create sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def driver_in_transaction(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under `connection`, inside its transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN only before the first statement it executes
    itself; plain SQL sent straight to the driver before that would each commit on its own.
    This starts the adapter's transaction first, as its own statements do, so the driver's
    statements commit or roll back with everything else (a half-issued invoice once committed
    its number without its outbox row).
    """
    fairy = await connection.get_raw_connection()
    adapter: Any = fairy.dbapi_connection
    if adapter is None:
        raise RuntimeError("the connection is closed")
    if not getattr(adapter, "autocommit", False) and adapter._transaction is None:
        await adapter._start_transaction()
    driver: asyncpg.Connection = adapter.driver_connection
    return driver


@asynccontextmanager
async def pooled_driver(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg driver, outside any transaction, for one-query hot paths.

    A failure invalidates the connection: SQLAlchemy did not see it fail, and would otherwise
    hand a dead connection to the next request.
    """
    async with engine.connect() as connection:
        fairy = await connection.get_raw_connection()
        driver: asyncpg.Connection = fairy.driver_connection
        try:
            yield driver
        except Exception:
            await connection.invalidate()
            raise


@asynccontextmanager
async def transaction(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """Open a session inside one transaction: committed on exit, rolled back on error."""
    async with sessions() as session, session.begin():
        yield session


async def database_is_reachable(engine: AsyncEngine) -> bool:
    """Tell whether the database answers a trivial query."""
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
