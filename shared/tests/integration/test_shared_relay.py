"""The relay under faults: fenced batches, parked rows, the replay window, its health."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.testing import eventually, read_topic
from shared.contracts import PurgeRequested
from shared.db import create_session_factory, driver_dsn, transaction
from shared.keystore import MemoryKeyStore
from shared.outbox import (
    _SELECT_BATCH,
    BATCH_MAX_BYTES,
    Outbox,
    OutboxRelay,
    forget_account_events,
)
from shared.settings import KafkaSettings
from shared.telemetry import create_telemetry
from shared.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.integration

DeliveryDatabase = Callable[[], Awaitable[AsyncEngine]]  # the conftest fixture

_UNPUBLISHED = "published_at IS NULL AND parked_at IS NULL"


async def _count(engine: AsyncEngine, where: str) -> int:
    async with engine.connect() as connection:
        query = f"SELECT count(*) FROM outbox_message WHERE {where}"  # noqa: S608 - test constants
        return int((await connection.execute(text(query))).scalar_one())


async def _nothing_waits(engine: AsyncEngine) -> bool:
    return await _count(engine, _UNPUBLISHED) == 0


async def _add_events(
    engine: AsyncEngine, kafka: KafkaSettings, accounts: Sequence[uuid.UUID], per_account: int
) -> dict[str, list[str]]:
    """Commit events for each account, interleaved; return each account's saga ids in order."""
    outbox = Outbox(source="relay-test", kafka=kafka, keys=MemoryKeyStore())
    sessions = create_session_factory(engine)
    sagas: dict[str, list[str]] = defaultdict(list)
    async with UnitOfWorkFactory(sessions=sessions, outbox=outbox)() as work:
        for _ in range(per_account):
            for account in accounts:
                saga = uuid.uuid4()
                work.emit(PurgeRequested(account_id=account, saga_id=saga))
                sagas[str(account)].append(str(saga))
    return sagas


async def _insert_raw(
    engine: AsyncEngine, *, topic: str, key: str, payload: bytes, headers: str
) -> uuid.UUID:
    """Write an outbox row as no Outbox.add would: the relay must cope with it anyway."""
    event_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO outbox_message (event_id, topic, key, payload, headers) "
                "VALUES (:event_id, :topic, :key, :payload, CAST(:headers AS jsonb))"
            ),
            {
                "event_id": event_id,
                "topic": topic,
                "key": key,
                "payload": payload,
                "headers": headers,
            },
        )
    return event_id


class _SplitBrainRelay(OutboxRelay):
    """A relay that believes it leads without the leader lock, as when a leader's LISTEN
    connection died unnoticed and a standby took the lock; it records its publish windows."""

    def __init__(self, windows: list[tuple[float, float, int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.windows = windows

    async def _lead(self) -> None:
        self._listener = await asyncpg.connect(driver_dsn(self.engine.url))
        await self._load_acked()
        self._leads = True

    async def _send(self, rows: Sequence[Any]) -> Any:
        self._started = time.monotonic()
        await asyncio.sleep(0.005)  # a slower broker: batches would overlap without a fence
        return await super()._send(rows)

    async def _settle(self, sending: Any) -> Any:
        try:
            return await super()._settle(sending)
        finally:
            self.windows.append((self._started, time.monotonic(), id(self)))

    async def relay_batch(self) -> int:
        sent = await super().relay_batch()
        # Let the other relay try the fence between transactions: long enough, on a loaded
        # machine, that it gets some batches (0.01 s once let one relay take all fifty).
        await asyncio.sleep(0.05)
        return sent


async def test_two_relays_that_both_think_they_lead_never_publish_at_once_and_keep_order(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings
) -> None:
    engine = await delivery_database()
    accounts = [uuid.uuid4() for _ in range(20)]
    sagas = await _add_events(engine, kafka, accounts, per_account=50)
    windows: list[tuple[float, float, int]] = []
    relays = [
        _SplitBrainRelay(
            windows,
            engine=engine,
            kafka=kafka,
            telemetry=create_telemetry("relay-test"),
            batch_size=20,
            poll_interval_s=0.005,
        )
        for _ in range(2)
    ]
    for relay in relays:
        await relay.start()
    try:
        await eventually(lambda: _nothing_waits(engine), timeout=60, what="all rows published")
    finally:
        for relay in relays:
            await relay.stop()
    records = await read_topic(
        kafka.bootstrap_servers, kafka.topic("purge.requested"), count=1000, timeout=30
    )

    windows.sort()
    overlaps = [
        (earlier, later) for earlier, later in itertools.pairwise(windows) if later[0] < earlier[1]
    ]
    assert overlaps == [], "two batches were being published at the same time"
    assert {owner for _, _, owner in windows} == {id(r) for r in relays}, "both relays published"
    assert sum(r._fenced_out for r in relays) > 0, "the fence turned a relay away"
    received: dict[str, list[str]] = defaultdict(list)
    for record in records:
        received[record.key.decode()].append(json.loads(record.value)["data"]["saga_id"])
    assert received == sagas, "every event once, in order per account"


async def test_rows_no_broker_accepts_are_parked_with_a_reason_and_the_rest_go_out_in_order(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await delivery_database()
    telemetry = create_telemetry("relay-test")
    account = uuid.uuid4()
    before = await _add_events(engine, kafka, [account], per_account=3)
    topic = kafka.topic("purge.requested")
    secret = b"CONTENT-THAT-MUST-NOT-BE-LOGGED"
    oversize = await _insert_raw(
        engine,
        topic=topic,
        key=str(account),
        payload=secret * (1_500_000 // len(secret)),  # over the broker's 1 MB
        headers='{"content-type": "application/json"}',
    )
    bad_topic = await _insert_raw(
        engine, topic="no spaces allowed!", key=str(account), payload=secret, headers="{}"
    )
    bad_headers = await _insert_raw(
        engine, topic=topic, key=str(account), payload=secret, headers='["not", "an", "object"]'
    )
    after = await _add_events(engine, kafka, [account], per_account=3)

    relay = OutboxRelay(engine=engine, kafka=kafka, telemetry=telemetry, poll_interval_s=0.05)
    with caplog.at_level(logging.INFO):
        await relay.start()
        try:
            records = await read_topic(kafka.bootstrap_servers, topic, count=6, key=str(account))
            await eventually(lambda: _nothing_waits(engine), timeout=10, what="nothing waits")
            await relay._refresh_stats()
            health = relay.health()
        finally:
            await relay.stop()

    sent = [json.loads(r.value)["data"]["saga_id"] for r in records]
    assert sent == before[str(account)] + after[str(account)], "later events were not held up"
    async with engine.connect() as connection:
        parked = {
            row.event_id: row.park_reason
            for row in await connection.execute(
                text("SELECT event_id, park_reason FROM outbox_message WHERE parked_at IS NOT NULL")
            )
        }
    assert set(parked) == {oversize, bad_topic, bad_headers}
    assert "MessageSizeTooLargeError" in parked[oversize]
    assert "topic name" in parked[bad_topic]
    assert "headers" in parked[bad_headers]
    for kind in ("too_large", "invalid_topic", "unserialisable"):
        sample = telemetry.registry.get_sample_value("outbox_parked_events_total", {"kind": kind})
        assert sample == 1, kind
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR and "parked" in r.message]
    assert {str(event_id) in r.message for r in alerts for event_id in parked} >= {True}
    assert len(alerts) == 3
    assert secret.decode() not in caplog.text, "logs never carry event content"
    assert health["parked"] == 3
    assert health["publishing"] is True


async def test_acknowledged_rows_are_kept_for_the_replay_window_unless_not_replayable(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings
) -> None:
    engine = await delivery_database()
    outbox = Outbox(source="relay-test", kafka=kafka, keys=MemoryKeyStore())
    sessions = create_session_factory(engine)
    async with UnitOfWorkFactory(sessions=sessions, outbox=outbox)() as work:
        kept = work.emit(PurgeRequested(account_id=uuid.uuid4(), saga_id=uuid.uuid4()))
        gone = work.emit(
            PurgeRequested(account_id=uuid.uuid4(), saga_id=uuid.uuid4()),
            replayable=False,
        )
    relay = OutboxRelay(
        engine=engine, kafka=kafka, telemetry=create_telemetry("relay-test"), replay_window_s=60
    )
    await relay.start()
    try:
        await eventually(lambda: _nothing_waits(engine), timeout=10, what="all rows published")
        async with engine.connect() as connection:
            left = (await connection.execute(text("SELECT event_id FROM outbox_message"))).all()
        assert [row.event_id for row in left] == [kept.id], "the non-replayable row is deleted"

        async with engine.begin() as connection:  # the kept row ages past the window
            await connection.execute(
                text("UPDATE outbox_message SET published_at = now() - interval '61 seconds'")
            )
        assert await relay.prune() == 1
        assert await _count(engine, "true") == 0
    finally:
        await relay.stop()
    assert gone.id != kept.id


async def test_the_batch_query_reads_the_partial_index_of_rows_still_to_publish(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings
) -> None:
    engine = await delivery_database()
    await _add_events(engine, kafka, [uuid.uuid4() for _ in range(50)], per_account=100)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE outbox_message SET published_at = now(), kafka_partition = 0, "
                "kafka_offset = seq WHERE seq % 100 <> 0"
            )
        )
        await connection.execute(text("ANALYZE outbox_message"))
        plan = "\n".join(
            row[0]
            for row in await connection.execute(
                text(
                    "EXPLAIN "
                    + _SELECT_BATCH.replace("$1", "500").replace("$2", str(BATCH_MAX_BYTES))
                )
            )
        )
    assert "ix_outbox_message_unpublished" in plan, plan


async def test_health_tells_a_relay_that_cannot_publish_from_a_standby(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings
) -> None:
    engine = await delivery_database()
    leader = OutboxRelay(
        engine=engine, kafka=kafka, telemetry=create_telemetry("relay-test"), poll_interval_s=0.05
    )
    standby = OutboxRelay(
        engine=engine, kafka=kafka, telemetry=create_telemetry("relay-test"), poll_interval_s=0.05
    )
    await leader.start()
    await eventually(lambda: leader.leading, timeout=10, what="the relay leads")
    await standby.start()
    try:
        await _add_events(engine, kafka, [uuid.uuid4()], per_account=1)
        await eventually(lambda: _nothing_waits(engine), timeout=10, what="all rows published")
        assert leader.health()["role"] == "leading"
        assert leader.health()["publishing"] is True
        assert standby.health()["role"] == "standby"

        assert leader._producer is not None
        await leader._producer.stop()  # from now on every send fails
        await _add_events(engine, kafka, [uuid.uuid4()], per_account=1)
        await eventually(
            lambda: leader.health()["consecutive_failures"] >= 2, timeout=10, what="failures"
        )
        health = leader.health()
        assert health["publishing"] is False
        assert health["last_error"]
        await asyncio.sleep(0.5)
        assert leader.health()["stalled_s"] >= 0.5, "the stall grows while a row waits"
    finally:
        await standby.stop()
        await leader.stop()


async def test_a_purge_forgets_the_accounts_kept_and_parked_events_and_keeps_no_new_ones(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings
) -> None:
    engine = await delivery_database()
    purged, other = uuid.uuid4(), uuid.uuid4()
    await _add_events(engine, kafka, [purged, other], per_account=3)
    async with engine.begin() as connection:  # published, then one of each account parked
        await connection.execute(text("UPDATE outbox_message SET published_at = now()"))
    await _insert_raw(engine, topic="bad topic", key=str(purged), payload=b"x", headers="{}")
    await _insert_raw(engine, topic="bad topic", key=str(other), payload=b"x", headers="{}")
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE outbox_message SET parked_at = now() WHERE published_at IS NULL")
        )
    await _add_events(engine, kafka, [purged, other], per_account=1)  # still waiting

    sessions = create_session_factory(engine)
    async with transaction(sessions) as session:
        assert await forget_account_events(session, account_id=purged) == 4

    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT key, replayable FROM outbox_message"))).all()
    assert [(key, replayable) for key, replayable in rows if key == str(purged)] == [
        (str(purged), False)
    ], "only the waiting event is left, and it goes once acknowledged"
    assert len([key for key, _ in rows if key == str(other)]) == 5, "other accounts untouched"


async def test_a_batch_of_large_events_is_capped_in_bytes_but_never_empty(
    delivery_database: DeliveryDatabase,
) -> None:
    """An export's chunks are large: a batch stops near BATCH_MAX_BYTES, keeping memory flat."""
    engine = await delivery_database()
    for _ in range(20):
        await _insert_raw(engine, topic="t", key="k", payload=b"x" * 900_000, headers='{"a": "b"}')
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        capped = await driver.fetch(_SELECT_BATCH, 500, BATCH_MAX_BYTES)
        tiny_cap = await driver.fetch(_SELECT_BATCH, 500, 10)
    assert len(capped) == BATCH_MAX_BYTES // 900_000 + 1
    assert [row["seq"] for row in capped] == sorted(row["seq"] for row in capped)
    assert len(tiny_cap) == 1, "a row larger than the cap still goes, alone"


async def _advisory_locks(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        query = (
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        )
        return int((await connection.execute(text(query))).scalar_one())


async def test_a_relay_stopped_at_any_moment_leaves_no_lock_for_the_next_one(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings
) -> None:
    """A relay stopped in the middle of a batch (a service shutting down) holds neither the
    leader lock nor the batch fence afterwards: the next relay on the database publishes."""
    engine = await delivery_database()
    account = uuid.uuid4()
    # A stop that lands while a batch's statement runs used to be swallowed by the rollback's
    # error: the relay went on, still leading, and stop() never returned.
    for stop_after_s in [step / 100 for step in range(0, 32, 2)]:
        await _add_events(engine, kafka, [account], per_account=1500)
        relay = OutboxRelay(
            engine=engine,
            kafka=kafka,
            telemetry=create_telemetry("relay-test"),
            poll_interval_s=0.05,
            batch_size=100,
        )
        await relay.start()
        await asyncio.sleep(stop_after_s)
        await asyncio.wait_for(relay.stop(), 30)  # TimeoutError: the stop was swallowed
        held = await _advisory_locks(engine)
        assert held == 0, f"stopped after {stop_after_s}s, {held} advisory locks are still held"


async def test_a_stop_is_never_swallowed_by_the_error_a_cancelled_batch_raises(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch cancelled mid-statement fails its rollback with another error (asyncpg: another
    operation is in progress); the relay must still stop, not retry as after a failure."""
    engine = await delivery_database()
    relay = OutboxRelay(
        engine=engine, kafka=kafka, telemetry=create_telemetry("relay-test"), poll_interval_s=0.05
    )
    in_batch = asyncio.Event()

    async def batch_whose_rollback_fails() -> int:
        in_batch.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as cancelled:
            raise RuntimeError("another operation is in progress") from cancelled
        return 0

    monkeypatch.setattr(relay, "relay_batch", batch_whose_rollback_fails)
    await relay.start()
    await asyncio.wait_for(in_batch.wait(), 30)
    stopping = asyncio.create_task(relay.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    if stopping not in done:  # the relay went on: let it stop for real, then fail
        monkeypatch.setattr(relay, "relay_batch", _nothing_to_send)
        while not stopping.done():
            relay._task.cancel()  # type: ignore[union-attr]
            await asyncio.wait({stopping}, timeout=0.5)
    assert stopping in done, "the relay went on relaying after it was stopped"
    assert await _advisory_locks(engine) == 0


async def test_a_stop_is_kept_when_a_library_loses_the_cancellation(
    delivery_database: DeliveryDatabase, kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that a library swallows (Python 3.11's asyncio.wait_for when its result
    arrives with the cancel) still stops the relay at the end of the batch in flight."""
    engine = await delivery_database()
    relay = OutboxRelay(
        engine=engine, kafka=kafka, telemetry=create_telemetry("relay-test"), poll_interval_s=0.05
    )
    in_batch = asyncio.Event()
    batches_after_the_stop = 0

    async def batch_that_swallows_the_cancel() -> int:
        nonlocal batches_after_the_stop
        if in_batch.is_set():
            batches_after_the_stop += 1
            return 0
        in_batch.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return 0

    monkeypatch.setattr(relay, "relay_batch", batch_that_swallows_the_cancel)
    await relay.start()
    await asyncio.wait_for(in_batch.wait(), 30)
    stopping = asyncio.create_task(relay.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    if stopping not in done:  # the relay went on: make it stop for real, then fail
        while not stopping.done():
            relay._task.cancel()  # type: ignore[union-attr]
            await asyncio.wait({stopping}, timeout=0.5)
    assert stopping in done, f"the relay ran {batches_after_the_stop} batches after its stop"
    assert batches_after_the_stop == 0
    assert await _advisory_locks(engine) == 0


async def _nothing_to_send() -> int:
    return 0
