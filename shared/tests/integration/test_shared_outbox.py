"""Transactional outbox, relay and inbox against the real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.testing import eventually, read_topic
from shared.contracts import PurgeRequested
from shared.db import create_session_factory, transaction
from shared.inbox import claim_event, prune_inbox
from shared.keystore import MemoryKeyStore
from shared.outbox import Outbox, OutboxRelay
from shared.settings import KafkaSettings
from shared.telemetry import create_telemetry
from shared.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.integration


async def _all_published(engine: AsyncEngine) -> bool:
    return await _waiting_rows(engine) == 0


async def _waiting_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        query = (
            "SELECT count(*) FROM outbox_message WHERE published_at IS NULL AND parked_at IS NULL"
        )
        return int((await connection.execute(text(query))).scalar_one())


async def _rows_of(engine: AsyncEngine, account_id: uuid.UUID) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT * FROM outbox_message WHERE key = :key ORDER BY seq"),
            {"key": str(account_id)},
        )
        return [dict(row) for row in result.mappings()]


async def test_relay_publishes_committed_events_in_order_with_keys_and_trace_and_marks_them(
    engine: AsyncEngine, kafka: KafkaSettings
) -> None:
    telemetry = create_telemetry("outbox-test")
    outbox = Outbox(source="outbox-test", kafka=kafka, keys=MemoryKeyStore())
    sessions = create_session_factory(engine)
    units = UnitOfWorkFactory(sessions=sessions, outbox=outbox)
    account_id = uuid.uuid4()
    sagas = [uuid.uuid4() for _ in range(40)]
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("request") as span:
        async with units() as work:
            for saga in sagas:
                work.emit(PurgeRequested(account_id=account_id, saga_id=saga))
        trace_id = format(span.get_span_context().trace_id, "032x")

    relay = OutboxRelay(engine=engine, kafka=kafka, telemetry=telemetry, batch_size=16)
    await relay.start()
    try:
        records = await read_topic(
            kafka.bootstrap_servers, kafka.topic("purge.requested"), count=40, key=str(account_id)
        )
        await eventually(lambda: _all_published(engine), timeout=10, what="all rows published")
    finally:
        await relay.stop()

    assert [json.loads(r.value)["data"]["saga_id"] for r in records] == [str(s) for s in sagas]
    assert {r.key for r in records} == {str(account_id).encode()}
    traceparents = {dict(r.headers)["traceparent"].decode().split("-")[1] for r in records}
    assert traceparents == {trace_id}, "the consumer's trace continues the request's"
    rows = await _rows_of(engine, account_id)
    assert all(row["published_at"] is not None for row in rows), "kept for the replay window"
    where = [(row["kafka_partition"], row["kafka_offset"]) for row in rows]
    assert where == [(r.partition, r.offset) for r in records], "each row knows its offset"


async def test_a_rolled_back_state_change_publishes_nothing(
    engine: AsyncEngine, kafka: KafkaSettings
) -> None:
    outbox = Outbox(source="outbox-test", kafka=kafka, keys=MemoryKeyStore())
    sessions = create_session_factory(engine)
    units = UnitOfWorkFactory(sessions=sessions, outbox=outbox)
    account_id = uuid.uuid4()

    async def change_that_fails() -> None:
        async with units() as work:
            work.emit(PurgeRequested(account_id=account_id, saga_id=uuid.uuid4()))
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert await _rows_of(engine, account_id) == []


async def test_rows_stay_in_the_outbox_until_the_broker_acknowledges(
    engine: AsyncEngine, kafka: KafkaSettings
) -> None:
    telemetry = create_telemetry("outbox-test")
    outbox = Outbox(source="outbox-test", kafka=kafka, keys=MemoryKeyStore())
    sessions = create_session_factory(engine)
    units = UnitOfWorkFactory(sessions=sessions, outbox=outbox)
    relay = OutboxRelay(engine=engine, kafka=kafka, telemetry=telemetry)
    await relay.start()
    assert relay._producer is not None
    await relay._producer.stop()  # the broker is gone, as far as the relay can tell
    account_id = uuid.uuid4()
    try:
        async with units() as work:
            work.emit(PurgeRequested(account_id=account_id, saga_id=uuid.uuid4()))
        with pytest.raises(Exception):  # noqa: B017, PT011 - any send failure will do
            await relay.relay_batch()
    finally:
        await relay.stop()
    rows = await _rows_of(engine, account_id)
    assert [(row["published_at"], row["parked_at"]) for row in rows] == [(None, None)]
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM outbox_message"))


async def test_the_inbox_claims_an_event_once_per_consumer(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    event_id = uuid.uuid4()
    async with transaction(sessions) as session:
        assert await claim_event(session, consumer="a", event_id=event_id)
    async with transaction(sessions) as session:
        assert not await claim_event(session, consumer="a", event_id=event_id)
        assert await claim_event(session, consumer="b", event_id=event_id)


async def test_an_inbox_claim_rolls_back_with_the_effect(engine: AsyncEngine) -> None:
    sessions = create_session_factory(engine)
    event_id = uuid.uuid4()

    async def effect_that_fails() -> None:
        async with transaction(sessions) as session:
            await claim_event(session, consumer="a", event_id=event_id)
            raise RuntimeError("effect failed")

    with pytest.raises(RuntimeError):
        await effect_that_fails()
    async with transaction(sessions) as session:
        assert await claim_event(session, consumer="a", event_id=event_id), "redelivery is handled"


async def test_concurrent_relays_never_publish_a_row_twice(
    engine: AsyncEngine, kafka: KafkaSettings
) -> None:
    telemetry = create_telemetry("outbox-test")
    outbox = Outbox(source="outbox-test", kafka=kafka, keys=MemoryKeyStore())
    sessions = create_session_factory(engine)
    units = UnitOfWorkFactory(sessions=sessions, outbox=outbox)
    account_id = uuid.uuid4()
    async with units() as work:
        for _ in range(200):
            work.emit(PurgeRequested(account_id=account_id, saga_id=uuid.uuid4()))
    relays = [
        OutboxRelay(engine=engine, kafka=kafka, telemetry=telemetry, batch_size=10)
        for _ in range(3)
    ]
    for relay in relays:
        await relay.start()
    try:
        records = await read_topic(
            kafka.bootstrap_servers, kafka.topic("purge.requested"), count=200, key=str(account_id)
        )
        await asyncio.sleep(1)  # give any duplicate time to arrive
        records = await read_topic(
            kafka.bootstrap_servers,
            kafka.topic("purge.requested"),
            count=201,
            key=str(account_id),
            timeout=2,
        )
    finally:
        for relay in relays:
            await relay.stop()
    ids = [json.loads(r.value)["id"] for r in records]
    assert len(ids) == 200
    assert len(set(ids)) == 200


async def test_one_relay_leads_and_a_standby_takes_over_when_it_stops(
    engine: AsyncEngine, kafka: KafkaSettings
) -> None:
    """Two instances of a service: one relay publishes (per-account order), the other waits."""
    telemetry = create_telemetry("outbox-test")
    outbox = Outbox(source="outbox-test", kafka=kafka, keys=MemoryKeyStore())
    sessions = create_session_factory(engine)
    units = UnitOfWorkFactory(sessions=sessions, outbox=outbox)
    first = OutboxRelay(engine=engine, kafka=kafka, telemetry=telemetry, poll_interval_s=0.05)
    second = OutboxRelay(engine=engine, kafka=kafka, telemetry=telemetry, poll_interval_s=0.05)
    await first.start()
    await eventually(lambda: first.leading, timeout=10, what="the first relay leads")
    await second.start()
    try:
        await asyncio.sleep(0.5)
        assert not second.leading, "only one relay leads"
        await first.stop()
        await eventually(lambda: second.leading, timeout=10, what="the standby takes over")
        account_id = uuid.uuid4()
        async with units() as work:
            work.emit(PurgeRequested(account_id=account_id, saga_id=uuid.uuid4()))
        records = await read_topic(
            kafka.bootstrap_servers, kafka.topic("purge.requested"), count=1, key=str(account_id)
        )
        assert len(records) == 1
    finally:
        await second.stop()


async def test_the_inbox_forgets_claims_older_than_its_window_only(engine: AsyncEngine) -> None:
    """Handled event ids are pruned past the window (longer than the topics keep events)."""
    sessions = create_session_factory(engine)
    old, recent = uuid.uuid4(), uuid.uuid4()
    async with transaction(sessions) as session:
        assert await claim_event(session, consumer="prune", event_id=old)
        assert await claim_event(session, consumer="prune", event_id=recent)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE inbox_message SET handled_at = now() - interval '20 days' "
                "WHERE event_id = :id"
            ),
            {"id": old},
        )
    assert await prune_inbox(engine, older_than_s=14 * 24 * 3600, batch=1) >= 1
    async with transaction(sessions) as session:
        assert await claim_event(session, consumer="prune", event_id=old), "forgotten"
        assert not await claim_event(session, consumer="prune", event_id=recent), "kept"


async def test_plain_sql_on_the_units_driver_rolls_back_with_it(
    engine: AsyncEngine, kafka: KafkaSettings
) -> None:
    """A hot path's statements on `work.driver()` belong to the unit's transaction."""
    outbox = Outbox(source="outbox-test", kafka=kafka, keys=MemoryKeyStore())
    units = UnitOfWorkFactory(sessions=create_session_factory(engine), outbox=outbox)
    account_id = uuid.uuid4()

    async def plain_sql_that_fails() -> None:
        async with units() as work:
            driver = await work.driver()
            assert driver.is_in_transaction()
            await driver.execute(
                "INSERT INTO outbox_message (event_id, topic, key, payload, headers, replayable)"
                " VALUES ($1, 'plain', $2, '\\x00', '{}'::jsonb, true)",
                uuid.uuid4(),
                str(account_id),
            )
            raise RuntimeError("the state change failed after its first statement")

    with pytest.raises(RuntimeError):
        await plain_sql_that_fails()
    assert await _rows_of(engine, account_id) == []
