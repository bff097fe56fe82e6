"""The transactional outbox: events written with the state change, then published by a relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry import propagate, trace
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import Envelope
from shared.crypto import DataKey, encrypt_personal, personal_paths
from shared.delivery import OUTBOX_CHANNEL, OutboxMessage
from shared.kafka import create_producer
from shared.keystore import KeyStore
from shared.settings import KafkaSettings
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

CONTENT_TYPE_HEADER = "content-type"


def event_aad(event_type: str, event_id: str, subject: str) -> bytes:
    """What a sealed personal field is bound to: its event's type, id and account."""
    return f"{event_type}|{event_id}|{subject}".encode()


def seal_envelope(envelope: Envelope[Any], key: DataKey | None) -> bytes:
    """The envelope's wire bytes, with its personal fields sealed with the account's key."""
    document = envelope.model_dump(mode="json")
    paths = personal_paths(envelope.data.__class__)
    if paths:
        if key is None:
            raise ValueError(f"{envelope.type} has personal fields: it needs the account's key")
        document["data"] = encrypt_personal(
            document["data"],
            paths,
            key,
            aad=event_aad(envelope.type, str(envelope.id), envelope.subject),
        )
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class Outbox:
    """Writes staged events into the outbox table inside the caller's transaction.

    Personal fields are sealed here with the account's key (crypto-shredding), so neither the
    outbox row nor any copy on the broker holds them readable once the key is destroyed.
    """

    def __init__(self, *, source: str, kafka: KafkaSettings, keys: KeyStore) -> None:
        self.source = source
        self.kafka = kafka
        self.keys = keys

    async def write(
        self, session: AsyncSession, staged: Sequence[tuple[Envelope[Any], bool]]
    ) -> None:
        """Add the rows of staged events to the session's transaction; the relay publishes them."""
        if not staged:
            return
        headers: dict[str, str] = {CONTENT_TYPE_HEADER: "application/json"}
        propagate.inject(headers)  # the trace of the request that caused the events
        rows = []
        for envelope, _replayable in staged:
            key = None
            if personal_paths(envelope.data.__class__):
                key = await self.keys.key_for_writing(envelope.data.account_id)
            rows.append(
                {
                    "event_id": envelope.id,
                    "topic": self.kafka.topic(envelope.type),
                    "key": envelope.subject,
                    "payload": seal_envelope(envelope, key),
                    "headers": headers,
                }
            )
        # A Core insert, not ORM objects: the session keeps nothing, so a handler that emits
        # thousands of events (an export's chunks) holds none of them in memory.
        connection = await session.connection()
        await connection.execute(insert(OutboxMessage), rows)


_SELECT_BATCH = text(
    "SELECT seq, topic, key, payload, headers FROM outbox_message "
    "ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_DELETE_SENT = text("DELETE FROM outbox_message WHERE seq = ANY(:seqs)")


class OutboxRelay:
    """Publishes outbox rows in batches; a row is deleted only after the broker acknowledged it."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        kafka: KafkaSettings,
        telemetry: Telemetry,
        batch_size: int = 500,
        poll_interval_s: float = 0.25,
    ) -> None:
        self.engine = engine
        self.kafka = kafka
        self.telemetry = telemetry
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._producer: AIOKafkaProducer | None = None  # made in start(): it needs the loop
        self._tracer = telemetry.tracer(__name__)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._leads = False

    async def start(self) -> None:
        """Connect the producer and start relaying once this relay leads."""
        self._producer = create_producer(self.kafka, client_id=f"{self.telemetry.service}-relay")
        await self._producer.start()
        self._task = asyncio.create_task(self._run(), name=f"{self.telemetry.service}-relay")

    @property
    def leading(self) -> bool:
        """Whether this relay holds the leader lock and publishes."""
        return self._listener is not None and not self._listener.is_closed() and self._leads

    async def _lead(self) -> None:
        """Hold the service's outbox leader lock before publishing anything.

        Two relays publishing at once could let a later batch overtake an earlier one and
        break per-account order; one leads, the others wait. The lock belongs to the LISTEN
        connection, so a crashed leader's lock is freed with its connection.
        """
        self._leads = False
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        self._listener = await asyncpg.connect(_asyncpg_dsn(self.engine))
        await self._listener.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
        acquire = "SELECT pg_try_advisory_lock($1)"
        while not await self._listener.fetchval(acquire, LEADER_LOCK):  # noqa: ASYNC110 - a lock held elsewhere
            await asyncio.sleep(self.poll_interval_s)
        self._leads = True
        log.info("%s outbox relay leads", self.telemetry.service)

    async def stop(self) -> None:
        """Stop after the batch in flight."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        if self._producer is not None:
            await self._producer.stop()

    async def _run(self) -> None:
        backoff = self.poll_interval_s
        while True:
            self._wake.clear()  # before reading, so a commit during the batch is not missed
            try:
                if not self.leading:
                    await self._lead()
                sent = await self.relay_batch()
                backoff = self.poll_interval_s
            except Exception:
                log.exception("outbox relay batch failed; retrying in %.2fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def relay_batch(self) -> int:
        """Publish one batch and delete its rows once acknowledged; return how many."""
        async with self.engine.begin() as connection:
            rows = (await connection.execute(_SELECT_BATCH, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            with self.telemetry.delivery.relay_batch_seconds.time():
                await self._publish(rows)
                await connection.execute(_DELETE_SENT, {"seqs": [row.seq for row in rows]})
        for row in rows:
            self.telemetry.delivery.relayed.labels(row.topic).inc()
        return len(rows)

    async def _publish(self, rows: Sequence[Any]) -> None:
        if self._producer is None:
            raise RuntimeError("the relay is not started")
        # One span per batch, linked to each message's creator (OpenTelemetry messaging
        # conventions for batch publishing). Each message keeps the traceparent of the request
        # that caused it, so the consumer continues that request's trace.
        links = [link for row in rows[:MAX_SPAN_LINKS] if (link := _creation_link(row.headers))]
        with self._tracer.start_as_current_span(
            "outbox publish",
            kind=trace.SpanKind.PRODUCER,
            links=links,
            attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(rows)},
        ):
            deliveries = [
                await self._producer.send(
                    row.topic,
                    value=row.payload,
                    key=row.key.encode(),
                    headers=[(k, str(v).encode()) for k, v in row.headers.items()],
                )
                for row in rows
            ]
            await asyncio.gather(*deliveries)


LEADER_LOCK = 0x51_7E_0B_0C  # advisory lock key; each service has its own database
MAX_SPAN_LINKS = 128  # OpenTelemetry's default limit of links per span


def _creation_link(headers: dict[str, Any]) -> trace.Link | None:
    """A link to the span that wrote the message, read from its W3C traceparent."""
    parts = str(headers.get("traceparent", "")).split("-")
    if len(parts) != 4:
        return None
    try:
        context = trace.SpanContext(
            trace_id=int(parts[1], 16),
            span_id=int(parts[2], 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(parts[3], 16)),
        )
    except ValueError:
        return None
    return trace.Link(context) if context.is_valid else None


def _asyncpg_dsn(engine: AsyncEngine) -> str:
    url = make_url(engine.url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)
