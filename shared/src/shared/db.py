"""Async SQLModel on asyncpg: one engine and session factory per service, built by the caller."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanContext
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import ExecuteStyle
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.telemetry import SpanRecorder

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


_OPERATION = re.compile(r"\s*(\w+)")
_TARGET = re.compile(r"\b(?:INTO|UPDATE|FROM|TABLE)\s+(?:ONLY\s+)?\"?(\w+)", re.IGNORECASE)
# Transaction control and session settings: no span (each span costs CPU on every request,
# and an issued invoice runs three of them); a commit's time shows as the gap between the
# last statement's span and the end of the operation's.
_UNTRACED = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SET", "SHOW", "SAVEPOINT", "RELEASE", "LISTEN"}
)


@lru_cache(maxsize=2048)
def statement_summary(statement: str) -> tuple[str, str | None]:
    """The statement's operation and the first table it names (`INSERT`, `invoice`); only
    keywords and identifiers, never a value (statements carry values as parameters)."""
    operation = _OPERATION.match(statement)
    target = _TARGET.search(statement)
    return (
        operation.group(1).upper() if operation else "SQL",
        target.group(1).lower() if target else None,
    )


class StatementSpans:
    """A client span per PostgreSQL statement a traced operation runs, named and described by
    the database semantic conventions (`db.operation.name`, `db.collection.name`), never with
    the statement's text or its values.

    One mechanism for both ways statements reach the server: SQLAlchemy's cursor events for
    the ORM's prepared statements, asyncpg's query logger for what goes straight to the driver
    (the outbox, the inbox, the hot paths). A statement run outside any recording span (the
    relay's polling, a sweep's bookkeeping) starts no trace of its own.
    """

    def __init__(self, spans: SpanRecorder, *, url: str) -> None:
        self.spans = spans
        self.namespace = make_url(url).database or ""

    def attach(self, engine: AsyncEngine) -> None:
        """Trace every statement on the engine's connections."""
        sync = engine.sync_engine
        event.listen(sync, "connect", self._on_connect)
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "handle_error", self._failed)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(self._logged)

    def _statement(self, statement: str) -> _Statement | None:
        # Sampled, not "recording": the driver's logger runs just after the statement, when
        # the operation's span may have ended; a child of an ended span is still its child.
        parent = trace.get_current_span().get_span_context()
        if not (parent.is_valid and parent.trace_flags.sampled):
            return None
        operation, table = statement_summary(statement)
        if operation in _UNTRACED:
            return None
        attributes: dict[str, Any] = {
            "db.system.name": "postgresql",
            "db.namespace": self.namespace,
            "db.operation.name": operation,
        }
        if table is not None:
            attributes["db.collection.name"] = table
        return _Statement(f"{operation} {table or self.namespace}", attributes, parent)

    def _record(
        self, statement: _Statement, start: int, end: int, error: BaseException | None
    ) -> None:
        if error is not None:
            statement.attributes["error.type"] = type(error).__name__
        # Nothing of the error but its type: a database error can quote the row's values.
        self.spans.child(
            statement.name,
            kind=trace.SpanKind.CLIENT,
            start_time=start,
            end_time=end,
            attributes=statement.attributes,
            error=error is not None,
            parent=statement.parent,
        )

    def _before(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        # A plain executemany goes through asyncpg's own executemany, which its query logger
        # sees; SQLAlchemy's own batches (insertmanyvalues) are prepared statements it does not.
        if context is not None and context.execute_style is not ExecuteStyle.EXECUTEMANY:
            traced = self._statement(statement)
            context._quittance_statement = None if traced is None else (traced, time.time_ns())

    def _after(
        self, _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        self._finish(context, None)

    def _failed(self, exception_context: Any) -> None:
        self._finish(exception_context.execution_context, exception_context.original_exception)

    def _finish(self, context: Any, error: BaseException | None) -> None:
        started = getattr(context, "_quittance_statement", None)
        if started is not None:
            context._quittance_statement = None
            traced, start = started
            self._record(traced, start, time.time_ns(), error)

    def _logged(self, record: Any) -> None:
        # Called soon after the statement, in the caller's context: the span is dated back.
        traced = self._statement(record.query)
        if traced is not None:
            now = time.time_ns()
            self._record(traced, now - int(record.elapsed * 1e9), now, record.exception)


@dataclass
class _Statement:
    """A traced statement's span name, attributes and parent."""

    name: str
    attributes: dict[str, Any]
    parent: SpanContext


def driver_dsn(url: str | URL) -> str:
    """The libpq URL asyncpg connects with, from a service's SQLAlchemy URL: its TLS mode is
    SQLAlchemy's `ssl` query parameter there and libpq's `sslmode` here."""
    parsed = make_url(url)
    query = dict(parsed.query)
    if "ssl" in query:
        query["sslmode"] = query.pop("ssl")
    plain = parsed.set(drivername="postgresql", query=query)
    return plain.render_as_string(hide_password=False)


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
