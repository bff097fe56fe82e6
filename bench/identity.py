"""Signing in and reading with the session cookie, against the raw work underneath.

`api_sign_in_per_s`: `POST /sessions` by CONCURRENCY clients, against `raw_argon2id_verify_per_s`,
argon2-cffi verifying the same password with the same parameters on as many threads as billing
has cores to give (Argon2id is slow by design: this is reported, not tuned away).
`api_authenticated_read_per_s`: `GET /customers/{id}` with the session cookie, against
`raw_select_per_s`, the same customer read in plain asyncpg on the same database.
`api_framework_read_per_s`: the same read through a one-route FastAPI app under uvicorn with
nothing else (bench/bare_read.py), against the same raw select: the ceiling of the stack itself.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import asyncpg
from argon2 import PasswordHasher

from bench.api import CONCURRENCY, POOL, _closed_loop
from bench.bare_read import CUSTOMER
from bench.profiling import start_profilers, stop_profilers
from devstack.processes import ManagedProcess, free_port, port_is_open, wait_until
from devstack.stack import Stack

Result = tuple[str, float, str, str, float]

SIGN_INS = 200
READS = 3000
WARMUP = 100
PASSWORD = "the bench owner's passphrase"  # noqa: S105 - a bench account's password


def _argon2_rate(stored: str, count: int) -> float:
    """Verifications per second, as many threads as the machine has cores."""
    hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda _: hasher.verify(stored, PASSWORD), range(count)))
    return count / (time.perf_counter() - started)


async def _framework_rate(stack: Stack, account_id: uuid.UUID, customer_id: uuid.UUID) -> float:
    """Reads per second of the same customer through the one-route app, started as billing is."""
    port = free_port()
    process = ManagedProcess(
        "bare-read",
        [
            *(sys.executable, "-m", "uvicorn", "bench.bare_read:create_app", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--no-server-header"),
        ],
        log_path=stack.log_dir / "bare-read.log",
        env={
            "BENCH_DSN": stack.database_url("billing").replace("+asyncpg", ""),
            "BENCH_POOL": str(POOL),
        },
    )
    process.start()
    try:
        await asyncio.to_thread(
            wait_until, lambda: port_is_open(port), timeout=30, what="the one-route app"
        )
        url = f"http://127.0.0.1:{port}/accounts/{account_id}/customers/{customer_id}"
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY)
        ) as client:

            async def read() -> None:
                async with client.get(url) as answered:
                    await answered.read()
                    if answered.status != 200:
                        raise RuntimeError(f"the one-route app answered {answered.status}")

            await _closed_loop(WARMUP, read)
            return await _closed_loop(READS, read)
    finally:
        process.stop()


async def bench_identity(stack: Stack) -> list[Result]:
    """Start billing, time sign-ins and cookie reads; then the raw verify and select."""
    stack.topic_prefix = f"bench{uuid.uuid4().hex[:6]}."
    await asyncio.to_thread(stack.create_databases, ["billing", "keystore"])
    await asyncio.to_thread(stack.migrate, "billing")
    await asyncio.to_thread(stack.start_service, "billing")
    base = stack.service_url("billing")
    try:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as api:
            email = f"ada-{uuid.uuid4().hex[:6]}@bench.example"
            async with api.post(
                f"{base}/accounts",
                json={
                    "name": "Bench Ltd",
                    "owner": {"name": "Ada", "email": email, "password": PASSWORD},
                },
            ) as response:
                opened = await response.json()
            key = {"Authorization": f"Bearer {opened['api_key']}"}
            async with api.post(
                f"{base}/customers", headers=key, json={"name": "Bob", "email": "bob@b.example"}
            ) as response:
                customer = await response.json()
            credentials = {"email": email, "password": PASSWORD}
            cookies: list[str] = []

            async def sign_in() -> None:
                async with api.post(f"{base}/sessions", json=credentials) as signed_in:
                    await signed_in.read()
                    if signed_in.status != 201:
                        raise RuntimeError(f"signing in answered {signed_in.status}")
                    cookies.append(signed_in.headers["set-cookie"].split(";")[0])

            sign_in_rate = await _closed_loop(SIGN_INS, sign_in)
            browser = {"Cookie": cookies[-1]}
            url = f"{base}/customers/{customer['id']}"

            async def read() -> None:
                async with api.get(url, headers=browser) as answered:
                    await answered.read()
                    if answered.status != 200:
                        raise RuntimeError(f"reading answered {answered.status}")

            api.cookie_jar.clear()
            await _closed_loop(WARMUP, read)
            profilers = start_profilers(stack, ["billing"])
            read_rate = await _closed_loop(READS, read)
            stop_profilers(profilers)
    finally:
        stack.stop_services()
    pool = await asyncpg.create_pool(
        stack.database_url("billing").replace("+asyncpg", ""), min_size=POOL, max_size=POOL
    )
    try:
        stored = await pool.fetchval("SELECT password_hash FROM app_user WHERE email = $1", email)
        account_id, customer_id = uuid.UUID(opened["account"]["id"]), uuid.UUID(customer["id"])

        async def select() -> None:
            await pool.fetchrow(CUSTOMER, account_id, customer_id)

        await _closed_loop(WARMUP, select)
        select_rate = await _closed_loop(READS, select)
    finally:
        await pool.close()
    framework_rate = await _framework_rate(stack, account_id, customer_id)
    verify_rate = await asyncio.to_thread(_argon2_rate, stored, SIGN_INS)
    return [
        ("api_sign_in_per_s", sign_in_rate, "sign-ins/s", "raw_argon2id_verify_per_s", verify_rate),
        (
            "api_authenticated_read_per_s",
            read_rate,
            "reads/s",
            "raw_select_per_s",
            select_rate,
        ),
        ("api_framework_read_per_s", framework_rate, "reads/s", "raw_select_per_s", select_rate),
    ]
