"""Fixtures of the delivery tests: a database with the outbox and inbox, topics per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.stack import Stack
from shared.db import create_engine
from shared.delivery import CREATE_OUTBOX_NOTIFY_SQL, DeliveryTable
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings

DeliveryDatabase = Callable[[], Awaitable[AsyncEngine]]


@pytest.fixture(scope="module")
async def delivery_database(infrastructure: Stack) -> AsyncIterator[DeliveryDatabase]:
    """Make fresh databases holding only the delivery tables, as a service's migrations would."""
    engines: list[AsyncEngine] = []

    async def create() -> AsyncEngine:
        name = f"delivery_{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(infrastructure.create_databases, [name], suffixed=False)
        engine = create_engine(infrastructure.database_url("x").rsplit("/", 1)[0] + f"/{name}")
        async with engine.begin() as connection:
            await connection.run_sync(DeliveryTable.metadata.create_all)
            for statement in CREATE_OUTBOX_NOTIFY_SQL:
                await connection.execute(text(statement))
        engines.append(engine)
        return engine

    yield create
    for engine in engines:
        await engine.dispose()


@pytest.fixture(scope="module")
async def engine(delivery_database: DeliveryDatabase) -> AsyncEngine:
    """One delivery database shared by a module's tests."""
    return await delivery_database()


@pytest.fixture
async def kafka(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    """Settings for a fresh topic namespace, with purge.requested created."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    await ensure_topics(settings, ["purge.requested"])
    return settings
