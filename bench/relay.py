"""relay_events_per_s: outbox rows to the broker, against plain aiokafka on the same records."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from devstack.stack import Stack, create_databases
from shared.contracts import PurgeRequested, new_envelope
from shared.db import create_engine
from shared.delivery import CREATE_OUTBOX_NOTIFY_SQL, DeliveryTable
from shared.kafka import ensure_topics
from shared.outbox import OutboxRelay
from shared.settings import KafkaSettings
from shared.telemetry import Telemetry, create_telemetry

EVENTS = 20_000
ROUNDS = 3
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


def _relayed(telemetry: Telemetry, topic: str) -> float:
    count = telemetry.registry.get_sample_value("outbox_relayed_events_total", {"topic": topic})
    return count or 0.0


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

    # Best of ROUNDS for both: on a shared two-core machine one run swings by half.
    topic = kafka.topic("purge.requested")
    baseline = max(
        [await _raw_produce(stack.bootstrap_servers, topic, records) for _ in range(ROUNDS)]
    )

    telemetry = create_telemetry("bench")
    relay = OutboxRelay(
        engine=engine,
        kafka=kafka,
        telemetry=telemetry,
        batch_size=1000,
        poll_interval_s=0.01,
    )
    # Started and leading first: the clock measures relaying, not connecting and electing.
    await relay.start()
    while not relay.leading:  # noqa: ASYNC110 - the relay has no event for this
        await asyncio.sleep(0.01)
    rates = []
    raw = await asyncpg.connect(url.replace("+asyncpg", ""))
    for round_ in range(1, ROUNDS + 1):
        await raw.copy_records_to_table(
            "outbox_message",
            columns=["event_id", "topic", "key", "payload", "headers"],
            records=[
                (uuid.uuid4(), topic, key, value, '{"content-type": "application/json"}')
                for key, value in records
            ],
        )
        started = time.perf_counter()  # the rows are committed: the relay is woken now
        # The relay's own counter, not the database: polling it would compete with the relay.
        while _relayed(telemetry, topic) < EVENTS * round_:  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.005)
        rates.append(EVENTS / (time.perf_counter() - started))
    await raw.close()
    await relay.stop()
    await engine.dispose()
    value = max(rates)
    return "relay_events_per_s", value, "events/s", "raw_produce_per_s", baseline
