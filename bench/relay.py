"""relay_events_per_s: outbox rows to the broker, against plain aiokafka on the same records."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.stack import Stack, create_databases
from shared.contracts import PurgeRequested, new_envelope
from shared.db import create_engine
from shared.delivery import CREATE_OUTBOX_NOTIFY_SQL, DeliveryTable
from shared.kafka import ensure_topics
from shared.outbox import OutboxRelay
from shared.settings import KafkaSettings
from shared.telemetry import create_telemetry

EVENTS = 20_000
ACCOUNTS = 200


def _records() -> list[tuple[str, bytes]]:
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    records = []
    for index in range(EVENTS):
        account = accounts[index % ACCOUNTS]
        envelope = new_envelope(
            PurgeRequested(account_id=account, saga_id=uuid.uuid4()), source="bench"
        )
        records.append((str(account), envelope.model_dump_json().encode()))
    return records


async def _raw_produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(
                topic, value, key=key.encode(), headers=[("content-type", b"application/json")]
            )
            for key, value in records
        ]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _rows_wait(engine: AsyncEngine) -> bool:
    # Acknowledged rows stay for the replay window: look for one still to publish. EXISTS
    # stops at the first, so polling does not compete with the relay for the database.
    query = (
        "SELECT EXISTS (SELECT 1 FROM outbox_message "
        "WHERE published_at IS NULL AND parked_at IS NULL)"
    )
    async with engine.connect() as connection:
        return bool((await connection.execute(text(query))).scalar_one())


async def bench_relay(stack: Stack) -> tuple[str, float, str, str, float]:
    """Fill an outbox, time the relay emptying it; time plain aiokafka on the same records."""
    name = f"bench_relay_{uuid.uuid4().hex[:6]}"
    await create_databases(stack.admin_url(), [name])
    url = stack.database_url("x").rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(DeliveryTable.metadata.create_all)
        for statement in CREATE_OUTBOX_NOTIFY_SQL:
            await connection.execute(text(statement))
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers, topic_prefix=f"{name}.")
    await ensure_topics(kafka, ["purge.requested"])
    records = _records()

    baseline = await _raw_produce(stack.bootstrap_servers, kafka.topic("purge.requested"), records)

    raw = await asyncpg.connect(url.replace("+asyncpg", ""))
    await raw.copy_records_to_table(
        "outbox_message",
        columns=["event_id", "topic", "key", "payload", "headers"],
        records=[
            (
                uuid.uuid4(),
                kafka.topic("purge.requested"),
                key,
                value,
                '{"content-type": "application/json"}',
            )
            for key, value in records
        ],
    )
    await raw.close()
    relay = OutboxRelay(
        engine=engine,
        kafka=kafka,
        telemetry=create_telemetry("bench"),
        batch_size=1000,
        poll_interval_s=0.01,
    )
    started = time.perf_counter()
    await relay.start()
    while await _rows_wait(engine):  # noqa: ASYNC110 - polling the database, not an event
        await asyncio.sleep(0.01)
    value = EVENTS / (time.perf_counter() - started)
    await relay.stop()
    await engine.dispose()
    return "relay_events_per_s", value, "events/s", "raw_produce_per_s", baseline
