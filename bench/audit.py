"""Audit's append from Kafka and its verification of a million entries.

`audit_append_per_s`: N `data.accessed` events, sealed as billing's outbox seals them (the
actor's name and the reason encrypted with the account's key), are produced straight to the
topic while audit is stopped; then audit starts as the stack runs it (a uvicorn process) and
chains them (its batch handler: one unit of work, one inbox statement and three COPYs a batch).
Measured from the first batch's `recorded_at` to the last's, so start-up is not counted: the
entries after the first batch over that time. Against `copy_in_rows_per_s`: asyncpg COPY of
the same N entry rows into a table like `audit_entry` (same columns and indexes), same database.

`audit_verify_entries_per_s`: the trail grown to VERIFY_ENTRIES (a million unless
BENCH_AUDIT_VERIFY_ENTRIES says otherwise) by the service's own batch append in this process,
checkpointed, then `AuditService.verify()` (what `GET /verify` and `python -m audit.verify`
run, in one process per CPU) timed over all of it. Against `raw_read_entries_per_s`: a plain
asyncpg fetch of every entry row, the least any verifier reads.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from unittest import mock

import asyncpg
from aiokafka import AIOKafkaProducer

from audit.domain import EntryKind
from audit.main import create_service
from audit.services import Act
from audit.settings import AuditSettings
from bench.profiling import start_profilers, stop_profilers
from bench.termination import _dsn
from devstack.stack import Stack
from shared.contracts import AccessActor, AccessPurpose, DataAccessed, new_envelope
from shared.db import create_engine, create_session_factory
from shared.keystore import create_key_store
from shared.outbox import Outbox, seal_envelope
from shared.unit_of_work import UnitOfWorkFactory

Result = tuple[str, float, str, str, float]

APPEND_EVENTS = int(os.environ.get("BENCH_AUDIT_EVENTS", "60000"))
# Audit's processes consuming (uvicorn workers, one consumer group): 1, as `make up` runs it.
APPEND_WORKERS = int(os.environ.get("BENCH_AUDIT_WORKERS", "1"))
VERIFY_ENTRIES = int(os.environ.get("BENCH_AUDIT_VERIFY_ENTRIES", "1000000"))
ACCOUNTS, STAFF = 1000, 40
GROW_BATCH = 5000


def _note(text: str) -> None:
    print(f"# audit: {text}", file=sys.stderr, flush=True)


def _access(account_id: uuid.UUID, index: int) -> DataAccessed:
    staff = index % 3 != 0
    return DataAccessed(
        account_id=account_id,
        access_id=uuid.uuid4(),
        actor=AccessActor.STAFF if staff else AccessActor.INTEGRATION,
        actor_id=f"staff-{index % STAFF}" if staff else f"integration-{index % 7}",
        actor_name="Sam Support" if staff else "Ledger Sync",
        purpose=AccessPurpose.SUPPORT if staff else AccessPurpose.INTEGRATION,
        reason=f"TICKET-{index}",
        grant_id=uuid.uuid4() if staff else None,
        resource_type="invoice",
        resource_id=str(uuid.uuid4()),
        accessed_at=datetime.now(UTC),
    )


async def _sealed_events(
    settings: AuditSettings, accounts: list[uuid.UUID]
) -> list[tuple[bytes, bytes]]:
    """(key, sealed bytes) of each event, keyed by account as billing's relay keys them."""
    keys = create_key_store(settings.keystore)
    await keys.start()
    try:
        account_keys = {account: await keys.key_for_writing(account) for account in accounts}
        bodies = []
        for index in range(APPEND_EVENTS):
            account = accounts[index % len(accounts)]
            envelope = new_envelope(_access(account, index), source="billing")
            bodies.append((str(account).encode(), seal_envelope(envelope, account_keys[account])))
        return bodies
    finally:
        await keys.close()


async def _produce(settings: AuditSettings, bodies: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        topic = settings.kafka.topic("data.accessed")
        futures = [
            await producer.send(
                topic,
                body,
                key=key,
                headers=[("content-type", b"application/json")],
            )
            for key, body in bodies
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _wait_for_entries(dsn: str, count: int, timeout_s: float = 600) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while (await connection.fetchval("SELECT count(*) FROM audit_entry")) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"audit chained fewer than {count} entries in {timeout_s} s")
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def _append_rate(dsn: str) -> float:
    """Entries chained after the first batch, over the time from the first batch to the last."""
    connection = await asyncpg.connect(dsn)
    try:
        first, last = await connection.fetchrow(
            "SELECT min(recorded_at), max(recorded_at) FROM audit_entry"
        )
        after_first = await connection.fetchval(
            "SELECT count(*) FROM audit_entry WHERE recorded_at > $1", first
        )
    finally:
        await connection.close()
    return float(after_first / (last - first).total_seconds())


async def _copy_rows_s(connection: asyncpg.Connection, table: str) -> tuple[int, float]:
    """Seconds a plain COPY of the table's rows takes into a table like it (same indexes)."""
    rows = await connection.fetch(f"SELECT * FROM {table}")  # noqa: S608 - our own table names
    columns = list(rows[0].keys())
    await connection.execute(
        f"DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE {table} INCLUDING ALL)"
    )
    records = [tuple(row) for row in rows]
    started = time.perf_counter()
    await connection.copy_records_to_table("bench_copy", records=records, columns=columns)
    elapsed = time.perf_counter() - started
    await connection.execute("DROP TABLE bench_copy")
    return len(records), elapsed


async def _copy_in_rate(dsn: str) -> float:
    """Plain COPY of the same entry rows into a table like audit_entry; also noted: the same
    COPY of all four rows an event writes (entry, personal part, global link, inbox claim), the
    most events a second this database could take with no other work at all."""
    connection = await asyncpg.connect(dsn)
    try:
        entries, entry_s = await _copy_rows_s(connection, "audit_entry")
        all_s = entry_s
        for table in ("audit_personal", "chain_link", "inbox_message"):
            all_s += (await _copy_rows_s(connection, table))[1]
        _note(f"the four rows of each event COPYed alone: {entries / all_s:.0f} events/s")
        return entries / entry_s
    finally:
        await connection.close()


async def _grow_and_verify(settings: AuditSettings, dsn: str) -> tuple[float, float, int]:
    """Grow the trail to VERIFY_ENTRIES with the service's append; (verify rate, raw read
    rate, entries)."""
    engine = create_engine(settings.database_url, pool_size=2)
    keys = create_key_store(settings.keystore)
    try:
        sessions = create_session_factory(engine)
        units = UnitOfWorkFactory(
            sessions=sessions, outbox=Outbox(source="audit", kafka=settings.kafka, keys=keys)
        )
        service = create_service(settings, sessions=sessions, units=units)
        accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
        have = (await service.verify()).entries
        _note(f"growing the trail from {have} to {VERIFY_ENTRIES} entries")
        index = have
        while index < VERIFY_ENTRIES:
            size = min(GROW_BATCH, VERIFY_ENTRIES - index)
            acts = [
                Act(
                    account_id=accounts[(index + n) % ACCOUNTS],
                    event_id=uuid.uuid4(),
                    kind=EntryKind.DATA_ACCESS,
                    actor_type="staff",
                    actor_id=f"staff-{(index + n) % STAFF}",
                    purpose="support",
                    grant_id=uuid.uuid4(),
                    outcome="granted",
                    resource_type="invoice",
                    resource_id=str(uuid.uuid4()),
                    occurred_at=datetime.now(UTC),
                    actor_name="Sam Support",
                    reason=f"TICKET-{index + n}",
                )
                for n in range(size)
            ]
            async with units() as work:
                await service.append_many(work, acts)
            index += size
        await service.checkpoint()
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("VACUUM ANALYZE")
        finally:
            await connection.close()
        started = time.perf_counter()
        result = await service.verify()
        verify_s = time.perf_counter() - started
        if result.finding is not None:
            raise RuntimeError(f"the untouched trail did not verify: {result.finding}")
        _note(f"verified {result.entries} entries and {result.links} links in {verify_s:.2f} s")
        connection = await asyncpg.connect(dsn)
        try:
            started = time.perf_counter()
            rows = await connection.fetch("SELECT * FROM audit_entry")
            read_s = time.perf_counter() - started
        finally:
            await connection.close()
        return result.entries / verify_s, len(rows) / read_s, result.entries
    finally:
        await engine.dispose()


async def bench_audit(stack: Stack) -> list[Result]:
    """audit_append_per_s against copy_in_rows_per_s; audit_verify_entries_per_s against
    raw_read_entries_per_s."""
    env = stack.service_env("audit")
    with mock.patch.dict(os.environ, env):
        settings = AuditSettings()
    await asyncio.to_thread(stack.create_topics)
    await asyncio.to_thread(stack.create_databases, ["audit", "keystore"])
    await asyncio.to_thread(stack.migrate, "audit")
    dsn = _dsn(stack, "audit")
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    bodies = await _sealed_events(settings, accounts)
    await _produce(settings, bodies)
    _note(f"{len(bodies)} sealed data.accessed events produced; starting audit")
    await asyncio.to_thread(partial(stack.start_service, "audit", workers=APPEND_WORKERS))
    profilers = start_profilers(stack, ["audit"])  # BENCH_PROFILE=<py-spy>
    try:
        await _wait_for_entries(dsn, len(bodies))
    finally:
        stop_profilers(profilers)
        await asyncio.to_thread(stack.stop_services)
    append_per_s = await _append_rate(dsn)
    copy_per_s = await _copy_in_rate(dsn)
    verify_per_s, read_per_s, entries = await _grow_and_verify(settings, dsn)
    _note(f"{entries} entries verified at {verify_per_s:.0f}/s ({entries / verify_per_s:.2f} s)")
    return [
        ("audit_append_per_s", append_per_s, "entries/s", "copy_in_rows_per_s", copy_per_s),
        (
            "audit_verify_entries_per_s",
            verify_per_s,
            "entries/s",
            "raw_read_entries_per_s",
            read_per_s,
        ),
    ]
