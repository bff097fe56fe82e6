"""The service engine against the real PostgreSQL: a burst reuses the pool, never churns it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Column, MetaData, Table, Text, text
from sqlalchemy.exc import ProgrammingError

from devstack.stack import Stack
from shared.db import StatementSpans, create_engine, driver_in_transaction
from shared.telemetry import create_telemetry
from shared.telemetry_privacy import span_attribute_allowed

pytestmark = pytest.mark.integration
PAY_NOTE = Table("pay_note", MetaData(), Column("body", Text))


async def test_a_burst_waits_for_pooled_connections_instead_of_opening_and_closing_more(
    infrastructure: Stack,
) -> None:
    """Overflow connections were closed on return: each burst paid for new connections."""
    engine = create_engine(
        infrastructure.database_url("x").rsplit("/", 1)[0] + "/postgres", pool_size=3
    )

    async def backend() -> int:
        async with engine.connect() as connection:
            pid = (
                await connection.execute(text("SELECT pg_backend_pid(), pg_sleep(0.01)"))
            ).scalar_one()
            return int(pid)

    try:
        first = set(await asyncio.gather(*(backend() for _ in range(20))))
        second = set(await asyncio.gather(*(backend() for _ in range(20))))
    finally:
        await engine.dispose()
    assert len(first) <= 3
    assert second == first, "the same connections serve the next burst"


@pytest.mark.clause("USE")
async def test_every_statement_of_a_traced_operation_is_a_postgres_span_without_its_values(
    infrastructure: Stack,
) -> None:
    """USE: statements through the ORM and straight to the driver alike: one client span
    each, a child of the operation's span, named by operation and table, with no text and no
    value."""
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry("unit", exporter=exporter)
    url = infrastructure.database_url("x").rsplit("/", 1)[0] + "/postgres"
    engine = create_engine(url)
    StatementSpans(telemetry.recorder("test"), url=url).attach(engine)
    marked = "ada.lovelace@example.com"
    try:
        async with engine.begin() as connection:  # outside any span: the relay's polling
            await connection.execute(text("SELECT :v AS untraced"), {"v": marked})
        with telemetry.tracer("test").start_as_current_span("operation") as operation:
            async with engine.begin() as connection:
                await connection.execute(
                    text("CREATE TEMPORARY TABLE pay_note (body text) ON COMMIT DROP")
                )
                await connection.execute(text("INSERT INTO pay_note VALUES (:v)"), {"v": marked})
                # Several rows with RETURNING: SQLAlchemy's insertmanyvalues batch, one span.
                returned = await connection.execute(
                    PAY_NOTE.insert().returning(PAY_NOTE.c.body), [{"body": marked}] * 3
                )
                assert len(returned.all()) == 3
                driver = await driver_in_transaction(connection)
                assert await driver.fetchval(
                    "SELECT count(*) FROM pay_note WHERE body = $1", marked
                )
                with pytest.raises(asyncpg.UndefinedTableError):
                    await driver.fetchval("SELECT body FROM no_such_table WHERE body = $1", marked)
            with pytest.raises(ProgrammingError):  # a failure the ORM sees
                async with engine.begin() as connection:
                    await connection.execute(
                        text("SELECT body FROM no_such_orm_table WHERE body = :v"), {"v": marked}
                    )
        await asyncio.sleep(0.05)  # the driver's logger runs soon after each statement
    finally:
        await engine.dispose()

    spans = [s for s in exporter.get_finished_spans() if s.name != "operation"]
    assert [s.name for s in spans] == [
        "CREATE pay_note",
        "INSERT pay_note",
        "INSERT pay_note",
        "SELECT pay_note",
        "SELECT no_such_table",
        "SELECT no_such_orm_table",
    ]
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == operation.get_span_context().span_id
        assert span.kind is trace.SpanKind.CLIENT
        assert span.attributes["db.system.name"] == "postgresql"
        assert span.attributes["db.namespace"] == "postgres"
        assert marked not in str(dict(span.attributes or {}))
        assert all(span_attribute_allowed(key) for key in span.attributes or {})
    for failed in spans[4:]:
        assert failed.status.status_code is trace.StatusCode.ERROR
        assert failed.attributes["error.type"] in {"UndefinedTableError", "ProgrammingError"}
    assert spans[1].attributes["db.collection.name"] == "pay_note"
