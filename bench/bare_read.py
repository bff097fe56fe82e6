"""The most any FastAPI route could do: the bench's customer read with no application around it.

One route, no middleware, no authentication, one asyncpg select from a pool of the bench's size,
under uvicorn started as billing is. `api_framework_read_per_s` measures it in the same run, so
`api_authenticated_read_per_s` can be read against the ceiling of the stack as well as the raw
select underneath.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

CUSTOMER = (
    "SELECT id, account_id, name, email, address, created_at FROM customer "
    "WHERE account_id = $1 AND id = $2"
)


def create_app() -> FastAPI:
    """The one-route app; BENCH_DSN and BENCH_POOL say where to read and with how many."""
    pools: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        size = int(os.environ["BENCH_POOL"])
        dsn = os.environ["BENCH_DSN"]
        pools.append(await asyncpg.create_pool(dsn, min_size=size, max_size=size))
        yield
        await pools[0].close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/accounts/{account_id}/customers/{customer_id}")
    async def read(account_id: uuid.UUID, customer_id: uuid.UUID) -> dict[str, object]:
        row = await pools[0].fetchrow(CUSTOMER, account_id, customer_id)
        return dict(row) if row else {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
