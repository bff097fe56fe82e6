"""The transactional outbox: events written with the state change, then published by a relay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidTopicError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from opentelemetry import propagate, trace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.contracts import Envelope
from shared.crypto import DataKey, encrypt_personal, personal_paths
from shared.db import driver_dsn, driver_in_transaction
from shared.delivery import OUTBOX_CHANNEL
from shared.errors import describe
from shared.kafka import (
    AckedRecord,
    BrokerProbe,
    create_producer,
    create_topics,
    is_valid_topic_name,
    record_digest,
    topic_names,
)
from shared.keystore import KeyStore
from shared.settings import KafkaSettings
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

CONTENT_TYPE_HEADER = "content-type"
# What a record adds to its payload and headers: the record batch header (61 bytes), the
# record's own framing and length prefixes, and the key (an account id). Generous on purpose:
# an event that passes this check is never refused by the producer for its size.
RECORD_OVERHEAD_BYTES = 512


class EventTooLargeError(ValueError):
    """An event larger than the broker accepts: it could never be published."""


def check_event_size(payload: bytes, headers: dict[str, str], limit: int) -> None:
    """Refuse an event whose Kafka record would exceed the broker's limit (never shows content)."""
    size = (
        len(payload)
        + sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
        + RECORD_OVERHEAD_BYTES
    )
    if size > limit:
        raise EventTooLargeError(
            f"the event would be a {size}-byte Kafka record; the broker accepts at most {limit}"
        )


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


def trace_headers() -> dict[str, str]:
    """The record headers of an event emitted now: its content type and the current trace."""
    headers: dict[str, str] = {CONTENT_TYPE_HEADER: "application/json"}
    propagate.inject(headers)
    return headers


class StagedEvent(NamedTuple):
    """An event waiting for its transaction's commit, with the trace of the code that emitted it."""

    envelope: Envelope[Any]
    replayable: bool
    headers: dict[str, str]


class Outbox:
    """Writes staged events into the outbox table inside the caller's transaction.

    Personal fields are sealed here with the account's key (crypto-shredding), so neither the
    outbox row nor any copy on the broker holds them readable once the key is destroyed.
    """

    def __init__(
        self,
        *,
        source: str,
        kafka: KafkaSettings,
        keys: KeyStore,
        producer: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.source = source
        self.kafka = kafka
        self.keys = keys
        self._producer = producer

    async def _seal(self, envelope: Envelope[Any], *, bulk: bool = False) -> bytes:
        key = None
        if personal_paths(envelope.data.__class__):
            key = await self.keys.key_for_writing(envelope.data.account_id)
        if bulk:
            return await asyncio.to_thread(seal_envelope, envelope, key)  # keeps the loop free
        return seal_envelope(envelope, key)

    async def write(self, connection: AsyncConnection, staged: Sequence[StagedEvent]) -> None:
        """Add the rows of staged events to the session's transaction; the relay publishes them.

        An event larger than the broker accepts is refused here, with the size and the limit,
        before anything is written: it could never be published.
        """
        if not staged:
            return
        values = []
        for envelope, replayable, headers in staged:
            payload = await self._seal(envelope)
            check_event_size(payload, headers, self.kafka.max_message_bytes)
            values.append(
                (
                    envelope.id,
                    self.kafka.topic(envelope.type),
                    envelope.subject,
                    payload,
                    json.dumps(headers),
                    replayable,
                )
            )
        # Straight through asyncpg on the transaction's connection: the session keeps nothing,
        # and an issued invoice does not pay SQLAlchemy's statement handling for its event.
        driver = await driver_in_transaction(connection)
        if len(values) == 1:  # the common case: executemany costs more for a single row
            await driver.execute(_INSERT_OUTBOX, *values[0])
        else:
            await driver.executemany(_INSERT_OUTBOX, values)

    async def publish_now(self, envelopes: Sequence[Envelope[Any]]) -> None:
        """Seal and publish events straight to the broker, returning once it has them all.

        For the pieces of a bulk transfer (an export's chunks), never for a state change: they
        skip the outbox table, so tens of megabytes are not written, read, marked and deleted
        in the database. Whoever sends them announces the transfer with an outbox event after
        this returns; pieces of a transfer never announced (a crash) are never assembled, and a
        transfer lost with a broker's memory is asked for again at its step's deadline.
        """
        if self._producer is None:
            raise RuntimeError("this outbox has no producer for direct publishing")
        producer = self._producer()
        headers = trace_headers()
        record_headers = [(k, v.encode()) for k, v in headers.items()]
        deliveries = []
        for envelope in envelopes:
            payload = await self._seal(envelope, bulk=True)
            check_event_size(payload, headers, self.kafka.max_message_bytes)
            deliveries.append(
                await producer.send(
                    self.kafka.topic(envelope.type),
                    value=payload,
                    key=envelope.subject.encode(),
                    headers=record_headers,
                )
            )
        await asyncio.gather(*deliveries)


_INSERT_OUTBOX = (
    "INSERT INTO outbox_message (event_id, topic, key, payload, headers, replayable) "
    "VALUES ($1, $2, $3, $4, $5::jsonb, $6)"
)


async def write_record(
    driver: asyncpg.Connection,
    *,
    topic: str,
    key: str,
    value: bytes,
    headers: dict[str, str],
    replayable: bool = True,
) -> None:
    """Add a record that is already sealed (a dead letter sent back) to the outbox, as it is,
    in the caller's transaction; the relay publishes it like any other."""
    await driver.execute(
        _INSERT_OUTBOX, uuid4(), topic, key, value, json.dumps(headers), replayable
    )


_FORGET_KEPT = text(
    "DELETE FROM outbox_message WHERE key = :key "
    "AND (published_at IS NOT NULL OR parked_at IS NOT NULL)"
)
_NEVER_KEEP = text(
    "UPDATE outbox_message SET replayable = false WHERE key = :key AND published_at IS NULL"
)


async def forget_account_events(session: AsyncSession, *, account_id: UUID) -> int:
    """Delete an account's events kept for replay or parked; its waiting ones won't be kept.

    A purge calls it in its own transaction: nothing about the account stays in the outbox,
    and a broker that forgot can never be sent the account's events again.
    """
    connection = await session.connection()
    key = {"key": str(account_id)}
    deleted = (await connection.execute(_FORGET_KEPT, key)).rowcount
    await connection.execute(_NEVER_KEEP, key)
    return int(deleted)


class UnpublishableError(Exception):
    """An outbox row that no broker will ever accept as it is."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


# Errors of one record that no retry cures. Anything else (the broker down, a leader moving,
# a timeout, a broker configured to refuse whole producer batches or record headers) fails
# the batch, which is retried with backoff and shows in health(): parking would then take
# rows that another configuration would accept.
_REFUSED_FOR_GOOD = (UnpublishableError, MessageSizeTooLargeError, InvalidTopicError)

LEADER_LOCK = 0x51_7E_0B_0C  # advisory lock keys; each service has its own database
FENCE_LOCK = 0x51_7E_0B_0D
MAX_SPAN_LINKS = 128  # OpenTelemetry's default limit of links per span
BATCHES_PER_TRANSACTION = 8  # bounds what a relay that dies mid-transaction publishes twice
SEND_SLICE = 100  # records handed to the producer between two yields to the event loop
PRUNE_BATCH = 1000  # rows deleted per statement, so pruning never holds long locks
PRUNE_BATCHES_PER_ROUND = 20
BACKLOG_COUNT_LIMIT = 100_000  # the backlog gauge counts up to here, so it stays cheap

# Taken in the batch's own transaction, so two relays never publish at once even if a
# leader's LISTEN connection (and so its leader lock) died without it noticing.
_FENCE = text("SELECT pg_try_advisory_xact_lock(:key)")
_FENCE_WAIT = text("SELECT pg_advisory_xact_lock(:key)")
# A separate statement after the fence: its snapshot then includes the commit of the
# batch the fence waited for. Served by the partial index on unpublished, unparked rows.
# A batch is capped in rows and in bytes (always at least one row): an export's chunks are
# large, and a batch of them must not balloon the relay's memory.
_BATCH_OF = (
    "SELECT seq, event_id, topic, key, payload, headers, replayable FROM ("
    " SELECT b.*, sum(octet_length(b.payload)) OVER (ORDER BY b.seq) AS running FROM ("
    "  SELECT seq, event_id, topic, key, payload, headers, replayable FROM outbox_message"
    "  WHERE published_at IS NULL AND parked_at IS NULL {after} ORDER BY seq LIMIT {limit}"
    " ) AS b"
    ") AS w WHERE running - octet_length(payload) < {max_bytes} ORDER BY seq"
)
_SELECT_BATCH = _BATCH_OF.format(after="", limit="$1", max_bytes="$2")
_SELECT_NEXT_BATCH = _BATCH_OF.format(after="AND seq > $1", limit="$2", max_bytes="$3")
BATCH_MAX_BYTES = 8 << 20
_MARK_PUBLISHED = text(
    "UPDATE outbox_message AS m "
    "SET published_at = now(), kafka_partition = a.kafka_partition, kafka_offset = a.kafka_offset "
    "FROM unnest(CAST(:seqs AS bigint[]), CAST(:partitions AS integer[]), "
    "CAST(:offsets AS bigint[])) AS a(seq, kafka_partition, kafka_offset) "
    "WHERE m.seq = a.seq"
)
_DELETE_SENT = text("DELETE FROM outbox_message WHERE seq = ANY(:seqs)")
# A purge may have made a row not replayable while it was being sent: it goes, not kept.
_DELETE_NO_LONGER_REPLAYABLE = text(
    "DELETE FROM outbox_message WHERE seq = ANY(:seqs) AND NOT replayable"
)
_PARK = text(
    "UPDATE outbox_message AS m SET parked_at = now(), park_reason = a.reason "
    "FROM unnest(CAST(:seqs AS bigint[]), CAST(:reasons AS text[])) AS a(seq, reason) "
    "WHERE m.seq = a.seq"
)
_PRUNE = text(
    "DELETE FROM outbox_message WHERE seq IN (SELECT seq FROM outbox_message "
    "WHERE published_at < now() - make_interval(secs => :window) "
    "ORDER BY published_at LIMIT :limit)"
)
_REPLAY = text(
    "UPDATE outbox_message SET published_at = NULL, kafka_partition = NULL, kafka_offset = NULL "
    "WHERE published_at IS NOT NULL AND replayable"
)
_LAST_ACKED = text(
    "SELECT DISTINCT ON (topic, kafka_partition) topic, kafka_partition, kafka_offset, payload, "
    "extract(epoch FROM now() - published_at) AS age_s FROM outbox_message "
    "WHERE published_at IS NOT NULL AND kafka_offset IS NOT NULL "
    "ORDER BY topic, kafka_partition, kafka_offset DESC"
)
_STATS = text(
    "SELECT (SELECT count(*) FROM outbox_message WHERE parked_at IS NOT NULL) AS parked, "
    "(SELECT extract(epoch FROM now() - created_at) FROM outbox_message "
    " WHERE published_at IS NULL AND parked_at IS NULL ORDER BY seq LIMIT 1) AS oldest_age_s, "
    "(SELECT count(*) FROM (SELECT 1 FROM outbox_message "
    " WHERE published_at IS NULL AND parked_at IS NULL LIMIT :cap) AS waiting) AS backlog"
)


@dataclass
class _Outcome:
    """What became of a batch: acknowledged rows with their offsets, and parked rows."""

    acked: list[tuple[Any, RecordMetadata]] = field(default_factory=list)
    parked: list[tuple[Any, str, str]] = field(default_factory=list)  # row, kind, reason


@dataclass
class _Sending:
    """A batch on its way: each row's pending acknowledgement, and the rows refused at once."""

    rows: Sequence[Any]
    span: trace.Span
    started: float
    deliveries: list[tuple[Any, asyncio.Future[RecordMetadata]]] = field(default_factory=list)
    parked: list[tuple[Any, str, str]] = field(default_factory=list)


def _abandon(sending: _Sending) -> None:
    """Stop caring about a batch whose transaction rolls back: its rows will be sent again."""
    sending.span.end()
    for _, delivery in sending.deliveries:
        delivery.add_done_callback(_retrieve)


def _retrieve(delivery: asyncio.Future[RecordMetadata]) -> None:
    if not delivery.cancelled():
        delivery.exception()  # retrieved, so asyncio does not report it as never retrieved


@dataclass
class _Stats:
    parked: int | None = None
    oldest_age_s: float | None = None
    backlog: int | None = None


class OutboxRelay:
    """Publishes outbox rows in batches; keeps acknowledged rows to replay to a broker that forgot.

    Rows the broker can never accept are parked with their reason instead of blocking the
    rows behind them. One relay per service publishes at a time (leader lock, and a fence
    around every batch), which keeps per-account order across instances.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        kafka: KafkaSettings,
        telemetry: Telemetry,
        topics: Iterable[str] = (),
        batch_size: int = 500,
        poll_interval_s: float = 0.25,
        replay_window_s: float = 900.0,
        broker_check_interval_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self.kafka = kafka
        self.telemetry = telemetry
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.replay_window_s = replay_window_s
        self.broker_check_interval_s = broker_check_interval_s
        self._probe = BrokerProbe(kafka, topics=topic_names(kafka, topics))
        self._producer: AIOKafkaProducer | None = None  # made in start(): it needs the loop
        self._tracer = telemetry.tracer(__name__)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._leads = False
        # The last record acknowledged on each partition, and when: what a broker that
        # forgot no longer holds.
        self._acked: dict[TopicPartition, tuple[AckedRecord, float]] = {}
        self._suspect = True  # check the broker before publishing: at start, after a failure
        self._forgot: str | None = None  # why the broker is new, until the replay is staged
        self._next_check = 0.0
        self._next_housekeeping = 0.0
        self._progress_at = time.monotonic()
        self._failures = 0
        self._last_error: str | None = None
        self._recoveries = 0
        self._fenced_out = 0
        self._stats = _Stats()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The relay's producer (acks=all), which direct publishing shares."""
        if self._producer is None:
            raise RuntimeError("the relay is not started")
        return self._producer

    async def start(self) -> None:
        """Connect the producer and start relaying once this relay leads."""
        self._stopping = False
        producer = create_producer(self.kafka, client_id=f"{self.telemetry.service}-relay")
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # its connections, before another attempt makes new ones
            raise
        self._producer = producer
        self._task = asyncio.create_task(self._run(), name=f"{self.telemetry.service}-relay")

    @property
    def leading(self) -> bool:
        """Whether this relay holds the leader lock and publishes."""
        return self._listener is not None and not self._listener.is_closed() and self._leads

    def health(self) -> dict[str, Any]:
        """The relay's state for /healthz: whether it leads, can publish, and what waits."""
        leading = self.leading
        return {
            "role": "leading" if leading else "standby",
            "publishing": not leading or self._failures == 0,
            # Seconds since the relay last published or found nothing to publish: it grows
            # only while rows wait and cannot go out.
            "stalled_s": round(time.monotonic() - self._progress_at, 3) if leading else 0.0,
            "consecutive_failures": self._failures,
            "last_error": self._last_error,
            "parked": self._stats.parked,
            "backlog": self._stats.backlog,
            "oldest_unpublished_age_s": self._stats.oldest_age_s,
            "broker_recoveries": self._recoveries,
        }

    async def _lead(self) -> None:
        """Hold the service's outbox leader lock before publishing anything.

        Two relays publishing at once could let a later batch overtake an earlier one and
        break per-account order; one leads, the others wait. The lock belongs to the LISTEN
        connection, so a crashed leader's lock is freed with its connection.
        """
        self._leads = False
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        self._listener = await asyncpg.connect(driver_dsn(self.engine.url))
        await self._listener.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
        acquire = "SELECT pg_try_advisory_lock($1)"
        while not await self._listener.fetchval(acquire, LEADER_LOCK):
            self._raise_if_stopping()
            await asyncio.sleep(self.poll_interval_s)
        self._raise_if_stopping()
        await self._load_acked()
        self._suspect = True
        self._next_housekeeping = 0.0
        self._progress_at = time.monotonic()
        self._leads = True
        log.info("%s outbox relay leads", self.telemetry.service)

    async def stop(self) -> None:
        """Stop after the batch in flight."""
        # The flag as well as the cancel: a library can lose a cancellation (Python 3.11's
        # asyncio.wait_for returns a result that arrives with it), and the loop then ends at
        # its next turn instead of relaying on, still leading.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        if self._producer is not None:
            await self._producer.stop()

    def _raise_if_stopping(self) -> None:
        if self._stopping:
            raise asyncio.CancelledError

    async def _run(self) -> None:
        backoff = self.poll_interval_s
        while not self._stopping:
            self._wake.clear()  # before reading, so a commit during the batch is not missed
            try:
                if not self.leading:
                    await self._lead()
                await self._check_broker()
                await self._housekeeping()
                sent = await self.relay_batch()
                backoff = self.poll_interval_s
            except Exception as exc:
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    # Stopped mid-batch: whatever the rollback raised, the relay stops.
                    raise asyncio.CancelledError from exc
                self._failures += 1
                self._last_error = _describe(exc)
                self._suspect = True  # the broker may come back as a new one
                log.exception("outbox relay batch failed; retrying in %.2fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    async def relay_batch(self) -> int:
        """Publish batches in one fenced transaction, then mark, delete or park their rows.

        Returns how many rows it settled. A batch is sent only once the one before it is
        fully acknowledged; meanwhile the database records that batch and reads the next.
        """
        outcomes: list[_Outcome] = []
        async with self.engine.begin() as connection:
            if not (await connection.execute(_FENCE, {"key": FENCE_LOCK})).scalar_one():
                self._fenced_out += 1  # another relay is publishing a batch right now
                return 0
            rows = await self._select(connection, after=None)
            if not rows:
                self._settled()
                return 0
            sending: _Sending | None = await self._send(rows)
            upcoming = await self._select_after(connection, rows, batches=1)
            try:
                while sending is not None:
                    current, sending = sending, None
                    outcome = await self._settle(current)
                    outcomes.append(outcome)
                    if not upcoming:
                        await self._record(connection, outcome)
                        break
                    # The database records this batch and reads the one after the next
                    # while the next is being sent.
                    background = asyncio.ensure_future(
                        self._record_then_select(connection, outcome, upcoming, len(outcomes) + 1)
                    )
                    try:
                        await asyncio.sleep(0)  # let it put its statement on the wire first
                        sending = await self._send(upcoming)
                    finally:
                        # Even when stopped here: the connection is free again before the
                        # transaction rolls back (asyncpg refuses a second operation).
                        upcoming = await background
            except BaseException:
                if sending is not None:
                    _abandon(sending)  # rolled back: these rows go out again
                raise
        self._settled()
        settled = 0
        for outcome in outcomes:
            self._after_commit(outcome)
            settled += len(outcome.acked) + len(outcome.parked)
        return settled

    async def _record_then_select(
        self, connection: AsyncConnection, outcome: _Outcome, rows: Sequence[Any], batches: int
    ) -> Sequence[Any]:
        await self._record(connection, outcome)
        return await self._select_after(connection, rows, batches=batches)

    async def _select_after(
        self, connection: AsyncConnection, rows: Sequence[Any], *, batches: int
    ) -> Sequence[Any]:
        """The batch after rows, if rows was full and the transaction may take another."""
        if len(rows) < self.batch_size or batches >= BATCHES_PER_TRANSACTION:
            return []
        return await self._select(connection, after=rows[-1]["seq"])

    async def _select(self, connection: AsyncConnection, *, after: int | None) -> Sequence[Any]:
        # Straight through asyncpg, inside the same transaction: SQLAlchemy's row handling
        # costs as much Python time as the query itself, and the relay is CPU-bound.
        driver: asyncpg.Connection | None = (
            await connection.get_raw_connection()
        ).driver_connection
        if driver is None:
            raise RuntimeError("the relay's database connection is closed")
        if after is None:
            rows: Sequence[Any] = await driver.fetch(
                _SELECT_BATCH, self.batch_size, BATCH_MAX_BYTES
            )
        else:
            rows = await driver.fetch(_SELECT_NEXT_BATCH, after, self.batch_size, BATCH_MAX_BYTES)
        return rows

    def _after_commit(self, outcome: _Outcome) -> None:
        self._note_acks(outcome.acked)
        for topic, count in Counter(row["topic"] for row, _ in outcome.acked).items():
            self.telemetry.delivery.relayed.labels(topic).inc(count)
        for row, kind, reason in outcome.parked:
            self.telemetry.delivery.parked.labels(kind).inc()
            log.error(
                "outbox event %s (seq %d, topic %.100s) parked, it can never be published: %s",
                row["event_id"],
                row["seq"],
                row["topic"],
                reason,
            )

    def _settled(self) -> None:
        self._failures = 0
        self._last_error = None
        self._progress_at = time.monotonic()

    async def _record(self, connection: AsyncConnection, outcome: _Outcome) -> None:
        kept = [(row, meta) for row, meta in outcome.acked if row["replayable"]]
        if kept:
            await connection.execute(
                _MARK_PUBLISHED,
                {
                    "seqs": [row["seq"] for row, _ in kept],
                    "partitions": [meta.partition for _, meta in kept],
                    "offsets": [meta.offset for _, meta in kept],
                },
            )
            await connection.execute(
                _DELETE_NO_LONGER_REPLAYABLE, {"seqs": [row["seq"] for row, _ in kept]}
            )
        once = [row["seq"] for row, _ in outcome.acked if not row["replayable"]]
        if once:
            await connection.execute(_DELETE_SENT, {"seqs": once})
        if outcome.parked:
            await connection.execute(
                _PARK,
                {
                    "seqs": [row["seq"] for row, _, _ in outcome.parked],
                    "reasons": [reason for _, _, reason in outcome.parked],
                },
            )

    async def _send(self, rows: Sequence[Any]) -> _Sending:
        """Hand a batch to the producer; rows it refuses outright are parked."""
        if self._producer is None:
            raise RuntimeError("the relay is not started")
        # One span per batch, linked to each message's creator (OpenTelemetry messaging
        # conventions for batch publishing). Each message keeps the traceparent of the request
        # that caused it, so the consumer continues that request's trace.
        links = [link for row in rows[:MAX_SPAN_LINKS] if (link := _creation_link(row["headers"]))]
        span = self._tracer.start_span(
            "outbox publish",
            kind=trace.SpanKind.PRODUCER,
            links=links,
            attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(rows)},
        )
        sending = _Sending(rows=rows, span=span, started=time.perf_counter())
        try:
            for index, row in enumerate(rows, 1):
                if index % SEND_SLICE == 0:
                    await asyncio.sleep(0)  # send() rarely yields: let the producer ship
                try:
                    headers = _record_headers(row)
                    delivery = await self._producer.send(
                        row["topic"], value=row["payload"], key=row["key"].encode(), headers=headers
                    )
                except _REFUSED_FOR_GOOD as exc:
                    sending.parked.append((row, _park_kind(exc), _describe(exc)))
                    continue
                sending.deliveries.append((row, delivery))
        except BaseException:
            _abandon(sending)
            raise
        return sending

    async def _settle(self, sending: _Sending) -> _Outcome:
        """Wait for a batch's acknowledgements; raise if any failed for a reason that may pass."""
        outcome = _Outcome(parked=sending.parked)
        transient: BaseException | None = None
        try:
            # One by one rather than gather(): acknowledgements come a producer batch at a
            # time, so most futures are done when reached and cost no callback.
            for row, delivery in sending.deliveries:
                try:
                    outcome.acked.append((row, await delivery))
                except _REFUSED_FOR_GOOD as exc:
                    outcome.parked.append((row, _park_kind(exc), _describe(exc)))
                except Exception as exc:
                    transient = transient or exc
        finally:
            sending.span.end()
        if transient is not None:
            raise transient  # the whole batch again: what went out is absorbed by inboxes
        self.telemetry.delivery.relay_batch_seconds.observe(time.perf_counter() - sending.started)
        return outcome

    def _note_acks(self, acked: Sequence[tuple[Any, RecordMetadata]]) -> None:
        """Remember the last record per partition; a lower offset than before means a new broker."""
        now = time.monotonic()
        last: dict[TopicPartition, tuple[int, bytes]] = {}
        for row, meta in acked:
            tp = meta.topic_partition
            previous = last[tp][0] if tp in last else self._acked_offset(tp)
            if previous is not None and meta.offset <= previous and self._forgot is None:
                self._forgot = (
                    f"{tp.topic}/{tp.partition} acknowledged offset {meta.offset} "
                    f"after offset {previous}"
                )
            last[tp] = (meta.offset, row["payload"])
        for tp, (offset, payload) in last.items():
            self._acked[tp] = (AckedRecord(offset, record_digest(payload)), now)

    def _acked_offset(self, tp: TopicPartition) -> int | None:
        entry = self._acked.get(tp)
        return entry[0].offset if entry is not None else None

    async def _check_broker(self) -> None:
        """Find out whether the broker forgot what it acknowledged; if so, replay the window."""
        now = time.monotonic()
        if self._forgot is None and (self._suspect or now >= self._next_check):
            # Only records still inside the replay window matter: older ones are gone from
            # the outbox, and a real Kafka's retention may have removed them anyway.
            window = {
                tp: record
                for tp, (record, at) in self._acked.items()
                if now - at < self.replay_window_s
            }
            self._forgot = await self._probe.forgotten(window)
            self._suspect = False
            self._next_check = now + self.broker_check_interval_s
        if self._forgot is not None:
            await self._replay(self._forgot)
            self._forgot = None

    async def _replay(self, reason: str) -> None:
        """Re-create the topics, then mark the replay window unpublished, in its original order."""
        await create_topics(self.kafka, [*self._probe.topics, *{tp.topic for tp in self._acked}])
        async with self.engine.begin() as connection:
            await connection.execute(_FENCE_WAIT, {"key": FENCE_LOCK})  # no batch in flight
            replayed = (await connection.execute(_REPLAY)).rowcount
        acknowledged_before, self._acked = bool(self._acked), {}
        if not (replayed or acknowledged_before):  # a first start: topics were just missing
            log.info("created the missing topics (%s)", reason)
            return
        self._recoveries += 1
        self.telemetry.delivery.broker_recoveries.inc()
        self.telemetry.delivery.republished.inc(replayed)
        log.warning(
            "the broker lost what it acknowledged (%s): topics re-created, "
            "%d events of the replay window will be published again",
            reason,
            replayed,
        )

    async def _load_acked(self) -> None:
        """Learn the last acknowledged records from the rows kept, whoever published them."""
        async with self.engine.connect() as connection:
            rows = (await connection.execute(_LAST_ACKED)).all()
        now = time.monotonic()
        self._acked = {
            TopicPartition(row.topic, row.kafka_partition): (
                AckedRecord(row.kafka_offset, record_digest(row.payload)),
                now - float(row.age_s),
            )
            for row in rows
        }

    async def _housekeeping(self) -> None:
        """Now and then: check the leader connection, prune the replay window, refresh stats."""
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + self.broker_check_interval_s
        if self._listener is not None:
            try:
                await asyncio.wait_for(self._listener.fetchval("SELECT 1"), 5.0)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("the outbox relay's leader connection is gone; electing again")
                await self._listener.close(timeout=1.0)
                self._leads = False
                return
        await self.prune()
        await self._refresh_stats()

    async def prune(self) -> int:
        """Delete acknowledged rows older than the replay window, a small batch at a time."""
        pruned = 0
        for _ in range(PRUNE_BATCHES_PER_ROUND):
            async with self.engine.begin() as connection:
                deleted = (
                    await connection.execute(
                        _PRUNE, {"window": self.replay_window_s, "limit": PRUNE_BATCH}
                    )
                ).rowcount
            pruned += deleted
            if deleted < PRUNE_BATCH:
                break
        return pruned

    async def _refresh_stats(self) -> None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(_STATS, {"cap": BACKLOG_COUNT_LIMIT})).one()
        age = float(row.oldest_age_s) if row.oldest_age_s is not None else None
        self._stats = _Stats(parked=row.parked, oldest_age_s=age, backlog=row.backlog)
        self.telemetry.delivery.backlog.set(row.backlog)
        self.telemetry.delivery.oldest_unpublished_age.set(age or 0.0)


def _record_headers(row: Any) -> list[tuple[str, bytes]]:
    """The row's Kafka headers; raises UnpublishableError for a row no broker would take."""
    if not is_valid_topic_name(row["topic"]):
        raise UnpublishableError("invalid_topic", "its topic name is not a legal Kafka topic name")
    if not isinstance(row["headers"], dict):
        kind = type(row["headers"]).__name__
        raise UnpublishableError("unserialisable", f"its headers are a JSON {kind}, not an object")
    return [(k, str(v).encode()) for k, v in row["headers"].items()]


def _park_kind(exc: BaseException) -> str:
    if isinstance(exc, UnpublishableError):
        return exc.kind
    if isinstance(exc, MessageSizeTooLargeError):
        return "too_large"
    if isinstance(exc, InvalidTopicError):
        return "invalid_topic"
    return "refused"


def _describe(exc: BaseException) -> str:
    # Kafka clients' messages name sizes and settings, never a record's content; the database's
    # can quote key values, so those keep only their kind and SQLSTATE.
    if type(exc).__module__.startswith("aiokafka"):
        return f"{type(exc).__name__}: {exc}"[:500]
    return describe(exc)


def _creation_link(headers: Any) -> trace.Link | None:
    """A link to the span that wrote the message, read from its W3C traceparent."""
    if not isinstance(headers, dict):  # a broken row is parked, it must not break the span
        return None
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
