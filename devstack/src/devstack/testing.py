"""Helpers for tests against the real servers: mail catcher client, Kafka readers, DB probes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord


class MailCatcher:
    """Reads what reached the SMTP server, through the mail catcher's JSON API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def messages(self) -> list[dict[str, Any]]:
        """Every message received, oldest first."""
        response = httpx.get(f"{self.url}/api/messages", timeout=10)
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    def to(self, address: str) -> list[dict[str, Any]]:
        """Messages addressed to one recipient."""
        return [m for m in self.messages() if address in m["to"]]

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], *, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll until predicate holds for the message list, or fail with what was there."""
        deadline = time.monotonic() + timeout
        while True:
            messages = await asyncio.to_thread(self.messages)
            if predicate(messages):
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"mail condition not met in {timeout}s; got {len(messages)} messages")
            await asyncio.sleep(0.2)


async def eventually(check: Callable[[], Any], *, timeout: float = 30, interval: float = 0.2, what: str = "condition") -> Any:
    """Await an async or sync check until it returns a truthy value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(interval)


async def read_topic(bootstrap: str, topic: str, *, count: int, timeout: float = 30) -> list[ConsumerRecord[bytes, bytes]]:
    """Read `count` records from a topic from the beginning (a fresh consumer group)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"test-reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def produce(bootstrap: str, topic: str, value: bytes, *, key: bytes | None = None,
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    """Produce one raw record and wait for the acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


async def rows_mentioning(database_url: str, needle: str) -> dict[str, int]:
    """Count, per table of a database, the rows whose text form contains needle."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        tables = [r["tablename"] for r in await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        found: dict[str, int] = {}
        for table in tables:
            count = await connection.fetchval(
                f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE $1', f"%{needle}%")
            if count:
                found[table] = count
        return found
    finally:
        await connection.close()
