"""The service engine against the real PostgreSQL: a burst reuses the pool, never churns it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from devstack.stack import Stack
from shared.db import create_engine

pytestmark = pytest.mark.integration


async def test_a_burst_waits_for_pooled_connections_instead_of_opening_and_closing_more(
    infrastructure: Stack,
) -> None:
    """Overflow connections were closed on return: each burst paid for new connections."""
    engine = create_engine(
        infrastructure.database_url("x").rsplit("/", 1)[0] + "/postgres", pool_size=3
    )

    async def backend() -> int:
        async with engine.connect() as connection:
            pid = (
                await connection.execute(text("SELECT pg_backend_pid(), pg_sleep(0.01)"))
            ).scalar_one()
            return int(pid)

    try:
        first = set(await asyncio.gather(*(backend() for _ in range(20))))
        second = set(await asyncio.gather(*(backend() for _ in range(20))))
    finally:
        await engine.dispose()
    assert len(first) <= 3
    assert second == first, "the same connections serve the next burst"
