"""The Kafka glue: broker factory, subscriber defaults, dead letters and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnsupportedVersionError,
)
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from pydantic import ValidationError

from shared.contracts.topics import dead_letter_topic
from shared.crypto import FieldDecryptionError
from shared.errors import describe
from shared.settings import KafkaSettings
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

DLQ_REASON_HEADER = "x-dead-letter-reason"
DLQ_KIND_HEADER = "x-dead-letter-kind"
DLQ_CONSUMER_HEADER = "x-dead-letter-consumer"
DLQ_ORIGIN_HEADER = "x-dead-letter-origin"
DLQ_CONTENT_TYPE_HEADER = "x-dead-letter-content-type"

Publish = Callable[..., Awaitable[Any]]


class PermanentError(Exception):
    """A message that no retry will ever handle; dead-lettered at once."""


# Errors that say something about the message or what it names (a missing file, a refused
# header), never about a server: no retry can help, so they go to the dead-letter topic at once.
_PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    PermanentError,
    ValidationError,
    ValueError,  # JSON and Unicode decoding errors among them
    LookupError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    FieldDecryptionError,  # a personal field unsealed, or sealed for another event
)


# SQLSTATEs of a server that cannot serve now, whatever the statement: a connection failure
# (class 08), an administrator or crash shutdown, a server still starting (57P01-57P03), too
# many connections (53300). A restart of PostgreSQL answers these for a few seconds.
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def _sqlstate(exc: BaseException) -> str:
    """The driver's SQLSTATE, through SQLAlchemy's wrapper if there is one; "" if none."""
    original = getattr(exc, "orig", None) or exc
    return str(getattr(original, "sqlstate", None) or getattr(exc, "sqlstate", None) or "")


def is_infrastructure_outage(exc: BaseException) -> bool:
    """Whether the error, or the driver error it wraps, says a server (database, broker, mail,
    disk, key or export store) is unavailable."""
    if isinstance(exc, _PERMANENT_ERRORS):
        return False
    return any(_says_server_unavailable(cause) for cause in _wrapped_chain(exc))


# How long a starting service waits for a server that is restarting (or not up yet).
STARTUP_WAIT_S = 120.0


async def waiting_out_outages(
    what: str, attempt: Callable[[], Awaitable[Any]], *, wait_s: float = STARTUP_WAIT_S
) -> None:
    """Run a start-up step until it succeeds, waiting while the server it needs is unavailable:
    a service (or one instance of it) started while the broker restarts must not exit. Any
    other error, or an outage longer than `wait_s`, is raised."""
    give_up = time.monotonic() + wait_s
    while True:
        try:
            await attempt()
            return
        except Exception as error:
            if not is_infrastructure_outage(error) or time.monotonic() > give_up:
                raise
            log.warning("%s is not reachable yet (%s); waiting", what, type(error).__name__)
            await asyncio.sleep(0.5)


def _wrapped_chain(exc: BaseException) -> list[BaseException]:
    """The error and, when it wraps a driver's, SQLAlchemy's `orig` (the adapter's error) and
    the causes beneath it (asyncpg's own); other errors' causes are their own business."""
    chain = [exc]
    cause: BaseException | None = getattr(exc, "orig", None)
    while isinstance(cause, BaseException) and len(chain) < 4 and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__
    return chain


def _says_server_unavailable(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if type(exc).__name__ == "KeyUnwrapError":
        return True  # a misconfigured key store must not make good events look purged
    if isinstance(exc, OSError | TimeoutError | InterfaceError | OperationalError):
        return not isinstance(exc, _PERMANENT_ERRORS)
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if _sqlstate(exc).startswith(_OUTAGE_SQLSTATES):
        return True  # PostgreSQL shutting down, restarting or out of connections
    module, name = type(exc).__module__, type(exc).__name__
    if module.startswith("asyncpg") and ("Connection" in name or "CannotConnect" in name):
        return True
    if module.startswith("asyncpg") and name == "InterfaceError" and "closed" in str(exc):
        return True  # a pooled connection the server dropped ("connection is closed")
    if module.startswith("asyncpg") and name == "InternalClientError":
        # The driver lost track of its protocol: seen when PostgreSQL is killed in the middle
        # of a statement (chaos). The statement's fate is the server's, never the request's.
        return True
    if module.startswith("aiokafka") and ("Connection" in name or "Timeout" in name):
        return True
    if module.startswith("aiosmtplib") and ("Connect" in name or "Disconnected" in name):
        return True
    return _http_store_unavailable(exc)


def _http_store_unavailable(exc: BaseException) -> bool:
    """The key store (Vault) or an S3 export store out of reach, or answering 5xx."""
    import httpx

    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    if type(exc).__module__.startswith("botocore"):
        if any(part in type(exc).__name__ for part in ("Connect", "Timeout", "Endpoint")):
            return True
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and (status >= 500 or status in (429, 503))
    return False


def classify(exc: BaseException) -> str:
    """`outage` (redeliver with growing backoff), `invalid` (dead-letter now), or `failed`."""
    if isinstance(exc, _PERMANENT_ERRORS):
        return "invalid"
    if is_infrastructure_outage(exc):
        return "outage"
    return "failed"


@dataclass
class DeadLetterPolicy:
    """Retries a failing handler, then sends the message to `<topic>.dlq` with the reason.

    An outage is never the message's fault: it is redelivered, waiting longer each time, and
    counted so that /healthz can tell a message that keeps coming back.
    """

    consumer: str
    telemetry: Telemetry
    max_attempts: int = 3
    retry_backoff_s: float = 0.2
    max_backoff_s: float = 30.0
    redelivery_alarm: int = 5
    publish: Publish | None = field(default=None, repr=False)
    redeliveries: dict[tuple[str, int, int], int] = field(default_factory=dict, repr=False)

    async def dead_letter(self, record: Any, *, kind: str, reason: str) -> None:
        """Publish the original bytes to the dead-letter topic; raises if the broker refuses."""
        if self.publish is None:
            raise RuntimeError("dead-letter publisher not bound to a broker")
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        original_type = headers.pop("content-type", "")
        headers.update(
            {
                # The bytes may be anything: readers of dead letters must not parse them blindly.
                "content-type": "application/octet-stream",
                DLQ_CONTENT_TYPE_HEADER: original_type,
                DLQ_REASON_HEADER: reason[:2000],
                DLQ_KIND_HEADER: kind,
                DLQ_CONSUMER_HEADER: self.consumer,
                DLQ_ORIGIN_HEADER: f"{record.topic}/{record.partition}/{record.offset}",
            }
        )
        await self.publish(
            record.value, topic=dead_letter_topic(record.topic), key=record.key, headers=headers
        )
        self.telemetry.delivery.dead_lettered.labels(record.topic, kind).inc()
        log.warning("dead-lettered %s from %s: %s", kind, record.topic, reason)

    def redelivered(self, record: Any) -> int:
        """Count one more redelivery of a record after an outage; return the count."""
        origin = (record.topic, record.partition, record.offset)
        if origin not in self.redeliveries and len(self.redeliveries) >= 1000:
            self.redeliveries.pop(next(iter(self.redeliveries)))  # keep the map bounded
        self.redeliveries[origin] = self.redeliveries.get(origin, 0) + 1
        return self.redeliveries[origin]

    def settled(self, record: Any) -> None:
        """The record was handled or dead-lettered: forget its redeliveries."""
        self.redeliveries.pop((record.topic, record.partition, record.offset), None)

    def stuck(self) -> list[str]:
        """Records redelivered at least `redelivery_alarm` times (for /healthz)."""
        return [
            f"{topic}/{partition}/{offset}"
            for (topic, partition, offset), count in self.redeliveries.items()
            if count >= self.redelivery_alarm
        ]

    async def settle(self, record: Any, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run attempt for one record: retried, then dead-lettered with the reason; an outage
        is waited out and raised, so the record is redelivered."""
        tries = 0
        while True:
            tries += 1
            try:
                result = await attempt()
            except Exception as exc:
                kind = classify(exc)
                if kind == "outage":
                    await self._back_off(record, exc)
                    raise
                if kind == "invalid" or tries >= self.max_attempts:
                    reason = (
                        _describe(exc)
                        if kind == "invalid"
                        else (f"failed {tries} times: {_describe(exc)}")
                    )
                    await self.dead_letter(record, kind=kind, reason=reason)
                    self.settled(record)
                    return None
                log.warning("handler failed (attempt %d): %s", tries, _describe(exc))
                await asyncio.sleep(self.retry_backoff_s * 2 ** (tries - 1))
            else:
                self.settled(record)
                return result

    async def wait_out_outage(self, record: Any, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run attempt (a batch's, which settles its records itself); after an outage, wait
        longer each time the same record comes back, then raise so it is redelivered."""
        try:
            result = await attempt()
        except Exception as exc:
            if classify(exc) == "outage":
                await self._back_off(record, exc)
            raise
        self.settled(record)
        return result

    async def _back_off(self, record: Any, exc: BaseException) -> None:
        # Never dead-letter a good message because a server is down: wait longer each time
        # the same record comes back, then nack so it is redelivered.
        count = self.redelivered(record)
        delay = min(self.retry_backoff_s * 2**count, self.max_backoff_s)
        log.warning(
            "server unavailable (redelivery %d, next in %.1fs): %s", count, delay, _describe(exc)
        )
        await asyncio.sleep(delay)

    def middleware(self, msg: Any, /, *, context: Any) -> BaseMiddleware[Any, Any]:
        """FastStream middleware factory."""
        return _DeadLetterMiddleware(msg, context=context, policy=self)


class _DeadLetterMiddleware(BaseMiddleware[Any, Any]):
    def __init__(self, msg: Any, /, *, context: Any, policy: DeadLetterPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: Callable[..., Awaitable[Any]], msg: Any) -> Any:
        record = msg.raw_message
        if isinstance(record, tuple | list):
            # A batch: its dispatcher settles each record itself; what comes out is an outage.
            return await self.policy.wait_out_outage(record[0], lambda: call_next(msg))
        return await self.policy.settle(record, lambda: call_next(msg))


def _describe(exc: BaseException) -> str:
    """Why a message failed, without the values it carried (dead letters and logs are read)."""
    return describe(exc)


def create_broker(
    *, service: str, kafka: KafkaSettings, telemetry: Telemetry, dead_letters: DeadLetterPolicy
) -> KafkaBroker:
    """A broker whose consumers trace, count, retry and dead-letter; publishes wait for acks=all."""
    broker = KafkaBroker(
        kafka.bootstrap_servers,
        client_id=service,
        acks="all",
        max_request_size=kafka.max_message_bytes,
        enable_idempotence=False,  # Tansu refuses it; the inbox makes redelivery harmless
        security=_security(kafka),
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=telemetry.tracer_provider),
            KafkaPrometheusMiddleware(registry=telemetry.registry, app_name=service),
            dead_letters.middleware,
        ],
        logger=logging.getLogger(f"{service}.broker"),
    )
    dead_letters.publish = broker.publish
    return broker


def ssl_context(kafka: KafkaSettings) -> Any:
    """The TLS context for the broker, or None in plaintext development (TLS clause)."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)


def client_security(kafka: KafkaSettings) -> dict[str, Any]:
    """The TLS and SASL arguments of every aiokafka client (producer, consumer, admin)."""
    arguments: dict[str, Any] = {
        "security_protocol": kafka.security_protocol,
        "ssl_context": ssl_context(kafka),
    }
    if kafka.security_protocol == "SASL_SSL":
        username, password = kafka.sasl_credentials()
        arguments |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    return arguments


def _security(kafka: KafkaSettings) -> Any:
    """The same for FastStream's broker."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    if kafka.security_protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context(kafka), use_ssl=True)
    username, password = kafka.sasl_credentials()
    mechanism = {
        "SCRAM-SHA-512": SASLScram512,
        "SCRAM-SHA-256": SASLScram256,
        "PLAIN": SASLPlaintext,
    }[kafka.sasl_mechanism]
    return mechanism(
        username=username,
        password=password,
        ssl_context=ssl_context(kafka),
        use_ssl=True,
    )


def create_producer(kafka: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (acks=all)."""
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        # The client refuses a larger record itself; a broker would refuse it anyway.
        max_request_size=kafka.max_message_bytes,
        **client_security(kafka),
    )


def subscriber_options(
    *,
    group_id: str,
    fetch_max_wait_ms: int = 50,
    session_timeout_ms: int = 10_000,
    heartbeat_interval_ms: int = 3_000,
) -> dict[str, Any]:
    """Offsets are committed only after the handler (and so its transaction) finished.

    A broker that lost its memory (a restarted Tansu) lost the group and its offsets too:
    the consumer's next heartbeat is refused (unknown member), it rejoins, finds no
    committed offset and starts from the earliest record, where the relay's replay of the
    forgotten events begins. Commits of the old generation fail and those messages come
    again; the inbox absorbs them.
    """
    return {
        "group_id": group_id,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",  # never "latest": a new broker's replay would be skipped
        # Tansu answers a fetch only when its wait ends, not when a record arrives: with
        # Kafka's 500 ms default a saga advanced two steps a second. Real Kafka long-polls
        # either way; a short wait costs it a few more idle fetches.
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": heartbeat_interval_ms,
    }


def topic_names(kafka: KafkaSettings, names: Iterable[str]) -> list[str]:
    """The physical names of logical topics and of their dead-letter topics."""
    return sorted({kafka.topic(n) for name in names for n in (name, dead_letter_topic(name))})


# Kafka's own rule for topic names; a broker refuses any other name.
_LEGAL_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def is_valid_topic_name(name: str) -> bool:
    """Whether a Kafka broker would accept this topic name."""
    return bool(_LEGAL_TOPIC_NAME.fullmatch(name)) and name not in {".", ".."}


def _admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers,
        **client_security(kafka),
    )


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    # Metadata for all topics: naming topics would make Tansu (and a Kafka with
    # auto.create.topics.enable) create the missing ones with its default partitions.
    return {
        t["topic"]: len(t["partitions"])
        for t in await admin.describe_topics()
        if not t["error_code"]
    }


async def ensure_topics(kafka: KafkaSettings, names: Iterable[str]) -> None:
    """Create the topics (and their dead-letter topics) that do not exist yet."""
    await create_topics(kafka, topic_names(kafka, names))


async def create_topics(kafka: KafkaSettings, physical_names: Iterable[str]) -> None:
    """Create missing topics with the declared partitions; add partitions to those with fewer."""
    wanted = sorted(set(physical_names))
    if not wanted:
        return
    admin = _admin(kafka)
    await admin.start()
    try:
        existing = await _partition_counts(admin)
        missing = [n for n in wanted if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service was first
                await admin.create_topics(
                    [NewTopic(n, kafka.partitions, 1) for n in missing], timeout_ms=10_000
                )
        short = {n: existing[n] for n in wanted if 0 < existing.get(n, 0) < kafka.partitions}
        if short:
            await _add_partitions(admin, short, kafka.partitions)
    finally:
        await admin.close()


async def _add_partitions(admin: AIOKafkaAdminClient, short: dict[str, int], wanted: int) -> None:
    # A topic auto-created by a broker that forgot it has the broker's default partitions.
    try:
        await admin.create_partitions({n: NewPartitions(total_count=wanted) for n in short})
    except (IncompatibleBrokerVersion, UnsupportedVersionError):
        # Tansu 0.6 cannot add partitions; keys still keep their order on fewer partitions.
        log.warning(
            "the broker cannot add partitions; topics keep fewer than %d: %s", wanted, short
        )


@dataclass(frozen=True)
class AckedRecord:
    """The last record the broker acknowledged on a partition: where it is, and its digest."""

    offset: int
    digest: bytes


def record_digest(value: bytes) -> bytes:
    """A short fingerprint of a record value, to recognise it when read back."""
    return hashlib.blake2b(value, digest_size=16).digest()


class BrokerProbe:
    """Tells whether the broker still holds what it acknowledged, or is a new one that forgot.

    Tansu keeps everything in memory and reports the same cluster id after a restart, and
    its ListOffsets answers are wrong; so besides the cluster id and the declared topics, the
    probe reads back the last record acknowledged on each partition, as a consumer would.
    """

    def __init__(
        self, kafka: KafkaSettings, *, topics: Iterable[str], timeout_s: float = 10.0
    ) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s
        self._cluster_id: str | None = None
        # Partitions each declared topic should have at least: declared, then as last seen,
        # so a topic that cannot be given more partitions is reported once, not forever.
        self._partitions: dict[str, int] = dict.fromkeys(topics, kafka.partitions)

    @property
    def topics(self) -> list[str]:
        """The physical topics this probe expects to exist."""
        return sorted(self._partitions)

    async def forgotten(self, acked: Mapping[TopicPartition, AckedRecord]) -> str | None:
        """Why the broker is not the one that acknowledged these records, or None."""
        admin = _admin(self.kafka)
        await admin.start()
        try:
            cluster_id = (await admin.describe_cluster())["cluster_id"]
            partitions = await _partition_counts(admin)
        finally:
            await admin.close()
        if self._cluster_id is not None and cluster_id != self._cluster_id:
            reason = f"the cluster id changed from {self._cluster_id} to {cluster_id}"
            self._cluster_id = cluster_id
            return reason
        self._cluster_id = cluster_id
        reasons = []
        for topic, expected in self._partitions.items():
            if topic not in partitions:
                reasons.append(f"topic {topic} is missing")
            elif partitions[topic] < expected:
                reasons.append(f"topic {topic} has {partitions[topic]} partitions, not {expected}")
            if topic in partitions:
                self._partitions[topic] = partitions[topic]
        reasons.extend(f"topic {tp.topic} is missing" for tp in acked if tp.topic not in partitions)
        if reasons:
            return "; ".join(sorted(set(reasons)))
        return await self._records_forgotten(acked)

    async def _records_forgotten(self, acked: Mapping[TopicPartition, AckedRecord]) -> str | None:
        if not acked:
            return None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",  # an offset out of range is the answer, not a reason to move
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=self.kafka.max_message_bytes + 64 * 1024,
            **client_security(self.kafka),
        )
        await consumer.start()
        try:
            consumer.assign(list(acked))
            for tp, record in acked.items():
                consumer.seek(tp, record.offset)
            return await self._read_back(consumer, dict(acked))
        finally:
            await consumer.stop()

    async def _read_back(
        self, consumer: AIOKafkaConsumer, pending: dict[TopicPartition, AckedRecord]
    ) -> str | None:
        deadline = time.monotonic() + self.timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read back {len(pending)} partitions")
            try:
                batch = await consumer.getmany(*pending, timeout_ms=200, max_records=len(pending))
            except OffsetOutOfRangeError as exc:
                return f"the acknowledged offsets {exc.args[0]} are out of range"
            for tp, records in batch.items():
                expected = pending.pop(tp)
                first = records[0]
                if first.offset != expected.offset or record_digest(first.value) != expected.digest:
                    return f"{tp.topic}/{tp.partition} holds another record at {expected.offset}"
            for tp, expected in list(pending.items()):
                highwater = consumer.highwater(tp)
                if highwater is not None and highwater <= expected.offset:
                    return (
                        f"{tp.topic}/{tp.partition} ends at {highwater}, before the record "
                        f"acknowledged at {expected.offset}"
                    )
        return None
