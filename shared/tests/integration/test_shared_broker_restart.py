"""A kill -9 of the broker under load loses nothing: the relay replays, consumers resume."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.broker import EmbeddedBroker
from devstack.processes import free_port
from devstack.testing import eventually, read_events
from shared.contracts import PurgeRequested
from shared.db import create_session_factory, transaction
from shared.kafka import DeadLetterPolicy, create_broker, ensure_topics, subscriber_options
from shared.keystore import MemoryKeyStore
from shared.outbox import Outbox, OutboxRelay
from shared.settings import KafkaSettings
from shared.telemetry import create_telemetry
from shared.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.integration

DeliveryDatabase = Callable[[], Awaitable[AsyncEngine]]  # the conftest fixture
log = logging.getLogger(__name__)

EVENTS = 2000
PER_TRANSACTION = 20


@pytest.fixture
def dedicated_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A Tansu of this test's own, apart from the session's broker: the test kills it."""
    broker = EmbeddedBroker(port=free_port(), log_dir=tmp_path / "tansu")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def _effects(engine: AsyncEngine) -> list[uuid.UUID]:
    async with engine.connect() as connection:
        return [row.event_id for row in await connection.execute(text("SELECT * FROM effect"))]


async def test_a_kill_9_of_the_broker_under_load_loses_nothing(
    dedicated_broker: EmbeddedBroker, delivery_database: DeliveryDatabase, topic_prefix: str
) -> None:
    engine = await delivery_database()
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE effect (event_id uuid PRIMARY KEY)"))
    sessions = create_session_factory(engine)
    kafka = KafkaSettings(
        bootstrap_servers=dedicated_broker.bootstrap_servers,
        topic_prefix=topic_prefix,
        retry_backoff_s=0.05,
    )
    topics = ["purge.requested"]
    await ensure_topics(kafka, topics)
    telemetry = create_telemetry("restart-test")

    consumer = create_broker(
        service="restart-test",
        kafka=kafka,
        telemetry=telemetry,
        dead_letters=DeadLetterPolicy(consumer="restart-test", telemetry=telemetry),
    )
    deliveries = 0

    async def on_purge_requested(body: Any, message: KafkaMessage) -> None:
        nonlocal deliveries
        event_id = json.loads(message.body)["id"]
        async with transaction(sessions) as session:
            connection = await session.connection()
            await connection.execute(
                text("INSERT INTO effect (event_id) VALUES (:id) ON CONFLICT DO NOTHING"),
                {"id": event_id},
            )
        deliveries += 1

    consumer.subscriber(
        kafka.topic("purge.requested"), **subscriber_options(group_id="restart-test")
    )(on_purge_requested)
    relay = OutboxRelay(
        engine=engine,
        kafka=kafka,
        telemetry=telemetry,
        topics=topics,
        batch_size=100,
        poll_interval_s=0.05,
        broker_check_interval_s=1.0,
    )
    outbox = Outbox(source="restart-test", kafka=kafka, keys=MemoryKeyStore())
    accounts = [uuid.uuid4() for _ in range(50)]
    written: list[uuid.UUID] = []

    async def write_load() -> None:
        for start in range(0, EVENTS, PER_TRANSACTION):
            async with UnitOfWorkFactory(sessions=sessions, outbox=outbox)() as work:
                for index in range(start, start + PER_TRANSACTION):
                    data = PurgeRequested(account_id=accounts[index % 50], saga_id=uuid.uuid4())
                    written.append(work.emit(data).id)
            await asyncio.sleep(0.04)  # about 5 s of load

    await consumer.start()
    await relay.start()
    try:
        load = asyncio.create_task(write_load())
        await eventually(lambda: len(written) >= EVENTS * 2 // 5, timeout=30, what="load")
        await eventually(lambda: _count_above(engine, EVENTS // 10), timeout=30, what="consumption")
        assert dedicated_broker.process is not None
        dedicated_broker.process.kill()  # SIGKILL: the broker's memory is gone
        killed_at = time.monotonic()
        await asyncio.sleep(1.0)
        dedicated_broker.start()  # the same port, an empty broker
        await load
        handled = await eventually(
            lambda: _all_handled(engine, len(written)), timeout=120, what="every event handled"
        )
        log.info(
            "all %d events handled %.1fs after the kill, %d deliveries, relay %s",
            len(written),
            time.monotonic() - killed_at,
            deliveries,
            relay.health(),
        )
    finally:
        await relay.stop()
        await consumer.stop()

    effects = await _effects(engine)
    assert handled
    assert len(effects) == len(set(effects)) == EVENTS, "each event's effect exactly once"
    assert set(effects) == set(written), "none missing"
    assert deliveries >= EVENTS
    assert relay.health()["broker_recoveries"] >= 1, "the relay saw the broker had forgotten"


async def _count_above(engine: AsyncEngine, threshold: int) -> bool:
    return len(await _effects(engine)) > threshold


async def _all_handled(engine: AsyncEngine, expected: int) -> bool:
    return len(await _effects(engine)) >= expected


async def _all_published(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        query = "SELECT count(*) FROM outbox_message WHERE published_at IS NULL"
        return int((await connection.execute(text(query))).scalar_one()) == 0


async def test_a_broker_that_forgot_while_the_relay_was_idle_gets_the_replay_window_again(
    dedicated_broker: EmbeddedBroker, delivery_database: DeliveryDatabase, topic_prefix: str
) -> None:
    """Topics re-created at once with the declared partitions, the same cluster id: only
    reading back the last acknowledged records shows that this broker is a new one."""
    engine = await delivery_database()
    sessions = create_session_factory(engine)
    kafka = KafkaSettings(
        bootstrap_servers=dedicated_broker.bootstrap_servers, topic_prefix=topic_prefix
    )
    topics = ["purge.requested"]
    await ensure_topics(kafka, topics)
    relay = OutboxRelay(
        engine=engine,
        kafka=kafka,
        telemetry=create_telemetry("restart-test"),
        topics=topics,
        poll_interval_s=0.05,
        broker_check_interval_s=0.5,
    )
    outbox = Outbox(source="restart-test", kafka=kafka, keys=MemoryKeyStore())
    account = uuid.uuid4()
    async with UnitOfWorkFactory(sessions=sessions, outbox=outbox)() as work:
        sagas = [
            str(work.emit(PurgeRequested(account_id=account, saga_id=uuid.uuid4())).data.saga_id)
            for _ in range(50)
        ]
    await relay.start()
    try:
        await eventually(lambda: _all_published(engine), timeout=10, what="all published")
        await asyncio.sleep(1.0)  # idle, and at least one check found the broker intact
        assert relay.health()["broker_recoveries"] == 0
        assert dedicated_broker.process is not None
        dedicated_broker.process.kill()
        dedicated_broker.start()
        await ensure_topics(kafka, topics)  # as another service starting up would
        records = await read_events(
            kafka.bootstrap_servers, kafka.topic("purge.requested"), count=50, key=str(account)
        )
    finally:
        await relay.stop()
    assert [r["data"]["saga_id"] for r in records] == sagas, "the window again, in order"
    assert relay.health()["broker_recoveries"] == 1


async def test_a_relay_started_after_the_broker_forgot_replays_from_the_offsets_it_kept(
    dedicated_broker: EmbeddedBroker, delivery_database: DeliveryDatabase, topic_prefix: str
) -> None:
    """The whole stack restarted (make up): the broker is empty, the outbox rows remain."""
    engine = await delivery_database()
    sessions = create_session_factory(engine)
    kafka = KafkaSettings(
        bootstrap_servers=dedicated_broker.bootstrap_servers, topic_prefix=topic_prefix
    )
    topics = ["purge.requested"]
    await ensure_topics(kafka, topics)
    outbox = Outbox(source="restart-test", kafka=kafka, keys=MemoryKeyStore())
    account = uuid.uuid4()
    async with UnitOfWorkFactory(sessions=sessions, outbox=outbox)() as work:
        envelopes = [
            work.emit(PurgeRequested(account_id=account, saga_id=uuid.uuid4())) for _ in range(20)
        ]

    def relay() -> OutboxRelay:
        return OutboxRelay(
            engine=engine,
            kafka=kafka,
            telemetry=create_telemetry("restart-test"),
            topics=topics,
            poll_interval_s=0.05,
        )

    first = relay()
    await first.start()
    try:
        await eventually(lambda: _all_published(engine), timeout=10, what="all published")
    finally:
        await first.stop()
    assert dedicated_broker.process is not None
    dedicated_broker.process.kill()
    dedicated_broker.start()
    await ensure_topics(kafka, topics)  # the dev stack creates every topic when it starts

    second = relay()
    await second.start()
    try:
        records = await read_events(
            kafka.bootstrap_servers, kafka.topic("purge.requested"), count=20, key=str(account)
        )
    finally:
        await second.stop()
    assert [r["id"] for r in records] == [str(e.id) for e in envelopes]
    assert second.health()["broker_recoveries"] == 1
