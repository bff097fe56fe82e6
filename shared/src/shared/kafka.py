"""The Kafka glue: broker factory, subscriber defaults, dead letters and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from pydantic import ValidationError

from shared.contracts.topics import dead_letter_topic
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


def is_infrastructure_outage(exc: BaseException) -> bool:
    """Whether the error says a server is unreachable, which is no fault of the message."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, OSError | TimeoutError | InterfaceError | OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


@dataclass
class DeadLetterPolicy:
    """Retries a failing handler, then sends the message to `<topic>.dlq` with the reason."""

    consumer: str
    telemetry: Telemetry
    max_attempts: int = 3
    retry_backoff_s: float = 0.2
    publish: Publish | None = field(default=None, repr=False)

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

    def middleware(self, msg: Any, /, *, context: Any) -> BaseMiddleware[Any, Any]:
        """FastStream middleware factory."""
        return _DeadLetterMiddleware(msg, context=context, policy=self)


class _DeadLetterMiddleware(BaseMiddleware[Any, Any]):
    def __init__(self, msg: Any, /, *, context: Any, policy: DeadLetterPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: Callable[..., Awaitable[Any]], msg: Any) -> Any:
        record = msg.raw_message
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call_next(msg)
            except (ValidationError, ValueError, PermanentError) as exc:
                # A body that does not match its contract never will: no retries.
                await self.policy.dead_letter(record, kind="invalid", reason=_describe(exc))
                return None
            except Exception as exc:
                if is_infrastructure_outage(exc):
                    # Never dead-letter a good message because a server is down: wait, then
                    # nack so it is redelivered; /healthz shows the outage meanwhile.
                    log.warning(
                        "server unavailable, message will be redelivered: %s", _describe(exc)
                    )
                    await asyncio.sleep(min(self.policy.retry_backoff_s * 2**attempt, 5.0))
                    raise
                if attempt >= self.policy.max_attempts:
                    reason = f"failed {attempt} times: {_describe(exc)}"
                    await self.policy.dead_letter(record, kind="failed", reason=reason)
                    return None
                log.warning("handler failed (attempt %d): %s", attempt, _describe(exc))
                await asyncio.sleep(self.policy.retry_backoff_s * 2 ** (attempt - 1))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return f"ValidationError: {problems}"
    return f"{type(exc).__name__}: {exc}"


def create_broker(
    *, service: str, kafka: KafkaSettings, telemetry: Telemetry, dead_letters: DeadLetterPolicy
) -> KafkaBroker:
    """A broker whose consumers trace, count, retry and dead-letter; publishes wait for acks=all."""
    broker = KafkaBroker(
        kafka.bootstrap_servers,
        client_id=service,
        acks="all",
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


def _security(kafka: KafkaSettings) -> Any:
    if kafka.security_protocol == "PLAINTEXT":
        return None
    from faststream.security import BaseSecurity

    return BaseSecurity(ssl_context=ssl_context(kafka), use_ssl=True)


def create_producer(kafka: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (acks=all)."""
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        security_protocol=kafka.security_protocol,
        ssl_context=ssl_context(kafka),
    )


def subscriber_options(*, group_id: str) -> dict[str, Any]:
    """Offsets are committed only after the handler (and so its transaction) finished."""
    return {
        "group_id": group_id,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
    }


async def ensure_topics(kafka: KafkaSettings, names: Iterable[str]) -> None:
    """Create the topics (and their dead-letter topics) that do not exist yet."""
    wanted = sorted({kafka.topic(n) for name in names for n in (name, dead_letter_topic(name))})
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers,
        security_protocol=kafka.security_protocol,
        ssl_context=ssl_context(kafka),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service was first
                await admin.create_topics(
                    [NewTopic(n, kafka.partitions, 1) for n in missing], timeout_ms=10_000
                )
    finally:
        await admin.close()
