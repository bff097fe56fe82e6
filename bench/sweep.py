"""Retention's sweep by plan, end to end, on the four services as processes.

Accounts of the free plan hold request metadata and delivery logs past the plan's time, seeded
straight into billing's and notifications' databases. An operator starts a sweep; the clock runs
until retention has every service's report of every account. Meanwhile another account's
`GET /account` is timed: the sweep's batches must not hold the API up.

Baseline, same run, same servers, same rows: a plain batched `DELETE` per account and table
with asyncpg (both databases at once, as the services sweep them), after seeding them again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import asyncpg
import httpx

from bench.termination import _dsn, _p99, _probe
from devstack.stack import Stack

Result = tuple[str, float, str, str, float]

SCALE = float(os.environ.get("BENCH_SWEEP_SCALE", "1"))
ACCOUNTS = 20
ROWS_PER_TABLE = int(6_250 * SCALE)  # per account: 4 tables x 20 accounts x 6,250 = 500,000
OPERATOR = {"Authorization": "Bearer dev-only-operator-token"}
BATCH = 5000  # as the participant kit's sweep
# Per service: table, the column its period runs from, and an INSERT of $2 rows for account $1
# from long before any plan's time.
SEEDS = {
    "billing": [
        (
            "web_session",
            "last_seen_at",
            "INSERT INTO web_session (id, token_hash, csrf_hash, account_id, created_at, "
            "last_seen_at, expires_at, ip_address, browser) "
            "SELECT gen_random_uuid(), md5(random()::text) || g, 'x', $1, "
            "now() - interval '400 days', now() - interval '400 days' + g * interval '1 s', "
            "now() - interval '399 days', '203.0.113.7', 'Firefox' FROM generate_series(1, $2) g",
        ),
        (
            "sign_in_failure",
            "created_at",
            "INSERT INTO sign_in_failure (id, account_id, address, created_at) "
            "SELECT gen_random_uuid(), $1, '203.0.113.7', "
            "now() - interval '400 days' + g * interval '1 s' FROM generate_series(1, $2) g",
        ),
        (
            "email_delivery",
            "changed_at",
            "INSERT INTO email_delivery (email_id, account_id, message_id, kind, recipient, "
            "status, attempts, changed_at) "
            "SELECT gen_random_uuid(), $1, '<' || g || '@bench>', 'invoice', "
            "'c' || g || '@bench.example.com', 'sent', 1, "
            "now() - interval '400 days' + g * interval '1 s' FROM generate_series(1, $2) g",
        ),
    ],
    "notifications": [
        (
            "outgoing_email",
            "created_at",
            "INSERT INTO outgoing_email (id, account_id, kind, message_id, recipient, subject, "
            "status, attempts, created_at, sent_at) "
            "SELECT gen_random_uuid(), $1, 'INVOICE', '<' || gen_random_uuid() || '@bench>', "
            "'c' || g || '@bench.example.com', 'Invoice ' || g, 'SENT', 1, "
            "now() - interval '400 days' + g * interval '1 s', "
            "now() - interval '400 days' + g * interval '1 s' FROM generate_series(1, $2) g",
        ),
    ],
}


async def _open(api: httpx.AsyncClient, name: str) -> tuple[uuid.UUID, dict[str, str]]:
    opened = await api.post(
        "/accounts",
        json={
            "name": name,
            "plan": "free",
            "owner": {"name": "Ada", "email": f"ada@{name}.example.com"},
        },
    )
    if opened.status_code != 201:
        raise RuntimeError(opened.text)
    body = opened.json()
    return uuid.UUID(body["account"]["id"]), {"Authorization": f"Bearer {body['api_key']}"}


async def _seed(stack: Stack, accounts: list[uuid.UUID]) -> int:
    seeded = 0
    for service, tables in SEEDS.items():
        connection = await asyncpg.connect(_dsn(stack, service))
        try:
            for table, _, insert in tables:
                for account_id in accounts:
                    await connection.execute(insert, account_id, ROWS_PER_TABLE)
                    seeded += ROWS_PER_TABLE
                await connection.execute(f"VACUUM ANALYZE {table}")
        finally:
            await connection.close()
    return seeded


async def _left(stack: Stack, accounts: list[uuid.UUID]) -> int:
    left = 0
    for service, tables in SEEDS.items():
        connection = await asyncpg.connect(_dsn(stack, service))
        try:
            for table, column, _ in tables:
                left += int(
                    await connection.fetchval(
                        f"SELECT count(*) FROM {table} WHERE account_id = ANY($1::uuid[]) "  # noqa: S608
                        f"AND {column} < now() - interval '300 days'",
                        accounts,
                    )
                )
        finally:
            await connection.close()
    return left


async def _raw_delete_service(stack: Stack, service: str, accounts: list[uuid.UUID]) -> int:
    """The floor: the same rows deleted in the same batches by plain asyncpg."""
    connection = await asyncpg.connect(_dsn(stack, service))
    deleted = 0
    try:
        for table, column, _ in SEEDS[service]:
            statement = (
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "  # noqa: S608
                f"WHERE account_id = $1 AND {column} < now() - interval '30 days' LIMIT $2))"
            )
            for account_id in accounts:
                while True:
                    status = await connection.execute(statement, account_id, BATCH)
                    count = int(status.split()[-1])
                    deleted += count
                    if count < BATCH:
                        break
    finally:
        await connection.close()
    return deleted


async def _vacuum(stack: Stack) -> None:
    for service, tables in SEEDS.items():
        connection = await asyncpg.connect(_dsn(stack, service))
        try:
            for table, _, _ in tables:
                await connection.execute(f"VACUUM ANALYZE {table}")
        finally:
            await connection.close()


async def bench_sweep(stack: Stack) -> list[Result]:
    """retention_sweep_rows_per_s against raw_delete_rows_per_s; api_p99_during_sweep_ms."""
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    await asyncio.to_thread(stack.start_services)
    try:
        async with (
            httpx.AsyncClient(base_url=stack.service_url("billing"), timeout=60) as api,
            httpx.AsyncClient(base_url=stack.service_url("retention"), timeout=60) as retention,
        ):
            accounts = [(await _open(api, f"swept{i}"))[0] for i in range(ACCOUNTS)]
            _, bystander = await _open(api, "bystander")
            watch = await asyncpg.connect(_dsn(stack, "retention"))
            for _ in range(300):  # retention learns each plan from billing's event
                if await watch.fetchval("SELECT count(*) FROM account_plan") > ACCOUNTS:
                    break
                await asyncio.sleep(0.2)

            seeded = await _seed(stack, accounts)
            started = time.perf_counter()
            raw = sum(
                await asyncio.gather(
                    *(_raw_delete_service(stack, service, accounts) for service in SEEDS)
                )
            )
            raw_s = time.perf_counter() - started
            if raw != seeded or await _left(stack, accounts):
                raise RuntimeError(f"the plain DELETE removed {raw} of {seeded} rows")
            await _vacuum(stack)

            stop = asyncio.Event()
            idle_probe = asyncio.create_task(_probe(api, bystander, stop))
            await asyncio.sleep(5)
            stop.set()
            idle = await idle_probe

            seeded = await _seed(stack, accounts)
            stop = asyncio.Event()
            busy_probe = asyncio.create_task(_probe(api, bystander, stop))
            started = time.perf_counter()
            response = await retention.post("/sweeps", headers=OPERATOR)
            if response.status_code != 202:
                raise RuntimeError(response.text)
            sweep_id = uuid.UUID(response.json()["sweep_id"])
            while not await watch.fetchval(
                "SELECT completed_at IS NOT NULL FROM retention_sweep WHERE id = $1", sweep_id
            ):
                if time.perf_counter() - started > 600:
                    raise RuntimeError("the sweep did not complete within 10 minutes")
                await asyncio.sleep(0.05)
            swept_s = time.perf_counter() - started
            stop.set()
            busy = await busy_probe
            swept = int(
                await watch.fetchval("SELECT rows FROM retention_sweep WHERE id = $1", sweep_id)
            )
            await watch.close()
            if swept != seeded or await _left(stack, accounts):
                raise RuntimeError(f"the sweep removed {swept} of {seeded} rows")
            print(
                f"sweep: {seeded} rows, {ACCOUNTS} accounts; plain DELETE {raw_s:.2f} s, "
                f"sweep {swept_s:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        await asyncio.to_thread(stack.stop_services)
    return [
        (
            "retention_sweep_rows_per_s",
            seeded / swept_s,
            "rows/s",
            "raw_delete_rows_per_s",
            raw / raw_s,
        ),
        ("api_p99_during_sweep_ms", _p99(busy), "ms", "api_p99_idle_ms", _p99(idle)),
    ]
