"""api_issue_invoice_per_s: draft and issue a 5-line invoice over HTTP, against plain asyncpg.

The API runs as its own uvicorn process with its outbox relay; the baseline runs the same two
transactions (draft: invoice and 5 lines; issue: number, status, outbox row) with plain asyncpg
on a pool of the same size, at the same concurrency.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from decimal import Decimal

import asyncpg
import httpx

from bench.profiling import start_profilers, stop_profilers
from devstack.stack import Stack

INVOICES = 1500
WARMUP = 100
CONCURRENCY = 32
POOL = 10
WORKERS = int(os.environ.get("BENCH_BILLING_WORKERS", "1"))
LINES = [{"description": f"Line {i}", "quantity": "2", "unit_price": "10.50"} for i in range(5)]


async def _run(count: int, one: object) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            await one()  # type: ignore[operator]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


async def _api(stack: Stack) -> tuple[float, str, str]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=stack.service_url("billing"), limits=limits, timeout=60
    ) as api:
        opened = (
            await api.post(
                "/accounts",
                json={
                    "name": "Bench Ltd",
                    "owner": {"name": "Ada", "email": "ada@bench.example.com"},
                },
            )
        ).json()
        headers = {"Authorization": f"Bearer {opened['api_key']}"}
        customer = (
            await api.post(
                "/customers",
                headers=headers,
                json={"name": "Bob", "email": "bob@bench.example.com"},
            )
        ).json()

        async def issue_one() -> None:
            draft = await api.post(
                "/invoices",
                headers=headers,
                json={
                    "customer_id": customer["id"],
                    "currency": "EUR",
                    "due_date": "2030-01-31",
                    "lines": LINES,
                },
            )
            issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=headers)
            if issued.status_code != 200:
                raise RuntimeError(issued.text)

        await _run(WARMUP, issue_one)
        return await _run(INVOICES, issue_one), opened["account"]["id"], customer["id"]


async def _baseline(url: str, account_id: str, customer_id: str) -> float:
    pool = await asyncpg.create_pool(url.replace("+asyncpg", ""), min_size=POOL, max_size=POOL)
    account, customer = uuid.UUID(account_id), uuid.UUID(customer_id)
    amount = Decimal("21.00")

    async def issue_one() -> None:
        invoice_id = uuid.uuid4()
        async with pool.acquire() as connection, connection.transaction():
            await connection.fetchrow(
                "SELECT id FROM customer WHERE account_id = $1 AND id = $2", account, customer
            )
            await connection.execute(
                "INSERT INTO invoice (id, account_id, customer_id, status, currency, total,"
                " due_date) VALUES ($1, $2, $3, 'DRAFT', 'EUR', $4, '2030-01-31')",
                invoice_id,
                account,
                customer,
                amount * 5,
            )
            await connection.executemany(
                "INSERT INTO invoice_line (id, invoice_id, account_id, position, description,"
                " quantity, unit_price, amount) VALUES ($1, $2, $3, $4, $5, 2, 10.50, 21.00)",
                [(uuid.uuid4(), invoice_id, account, i, f"Line {i}") for i in range(5)],
            )
        async with pool.acquire() as connection, connection.transaction():
            await connection.fetchrow(
                "SELECT * FROM invoice WHERE account_id = $1 AND id = $2 FOR UPDATE",
                account,
                invoice_id,
            )
            number = await connection.fetchval(
                "UPDATE account SET next_invoice_number = next_invoice_number + 1 WHERE id = $1 "
                "RETURNING next_invoice_number - 1",
                account,
            )
            await connection.execute(
                "UPDATE invoice SET number = $1, status = 'ISSUED', issue_date = now(),"
                " issued_at = now() WHERE id = $2",
                f"RAW-{number:07d}",
                invoice_id,
            )
            await connection.fetch(
                "SELECT * FROM invoice_line WHERE invoice_id = $1 ORDER BY position", invoice_id
            )
            await connection.execute(
                "INSERT INTO outbox_message (event_id, topic, key, payload, headers) "
                "VALUES ($1, 'bench.raw', $2, $3, $4)",
                uuid.uuid4(),
                account_id,
                json.dumps({"invoice": str(invoice_id), "lines": LINES}).encode(),
                "{}",
            )

    try:
        await _run(WARMUP, issue_one)
        return await _run(INVOICES, issue_one)
    finally:
        await pool.close()


async def bench_api_issue_invoice(stack: Stack) -> tuple[str, float, str, str, float]:
    """Start billing as a process, time the API, then the raw transactions on its database."""
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    await asyncio.to_thread(stack.create_databases, ["billing", "keystore"])
    await asyncio.to_thread(stack.migrate, "billing")
    await asyncio.to_thread(stack.start_service, "billing", workers=WORKERS)
    profilers = start_profilers(stack, ["billing"])
    try:
        value, account_id, customer_id = await _api(stack)
    finally:
        stop_profilers(profilers)
        stack.stop_services()
    baseline = await _baseline(stack.database_url("billing"), account_id, customer_id)
    return "api_issue_invoice_per_s", value, "invoices/s", "raw_insert_tx_per_s", baseline
