"""The dead letters a service's consumer set aside, with their reasons, and their redrive.

Operators see each letter's topic, kind of failure, reason, time and account id, never its
content. Once the cause is fixed they send it back to its topic: the letter goes through the
outbox together with a `data.accessed` event for the account, in one transaction, so the
customer's trail shows that staff handled their data (STAFF-ACCESS) and nothing is lost; a
letter is sent back once (its id is claimed in the inbox), and the consumers' inboxes absorb it
where it had already been handled.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.asgi import AsgiResponse

from shared.asgi_api import api_route, json_response, operator_refusal, problem, whole_number
from shared.contracts import AccessActor, AccessPurpose, DataAccessed
from shared.contracts.topics import DEAD_LETTER_SUFFIX, TOPICS
from shared.kafka import (
    DLQ_CONSUMER_HEADER,
    DLQ_CONTENT_TYPE_HEADER,
    DLQ_KIND_HEADER,
    DLQ_ORIGIN_HEADER,
    DLQ_REASON_HEADER,
    client_security,
)
from shared.outbox import write_record
from shared.settings import KafkaSettings
from shared.unit_of_work import UnitOfWorkFactory

REDRIVE_CONSUMER = "dead-letter-redrive"  # its inbox rows mark the letters already sent back
REDRIVEN_FROM_HEADER = "x-redriven-from"
READ_TIMEOUT_S = 10.0
_LETTER_IDS = uuid.UUID("6f1d3c1e-5d1b-4a38-9a53-4b1f0e7e2d11")  # uuid5 namespace


class DeadLetterNotFoundError(LookupError):
    """No dead letter of this service's consumer has that id."""


class AlreadyRedrivenError(Exception):
    """The letter was sent back before."""


class NotRedrivableError(ValueError):
    """The letter names no account: it can be neither handled nor recorded in a trail."""


@dataclass(frozen=True)
class DeadLetter:
    """What an operator sees of a dead letter: where it failed and why, never its content."""

    id: str  # <dead-letter topic>/<partition>/<offset>
    topic: str
    kind: str
    reason: str
    origin: str
    account_id: str | None
    dead_lettered_at: str
    size_bytes: int
    redriven: bool

    def as_json(self) -> dict[str, Any]:
        """The letter as a JSON object."""
        return asdict(self)


def _headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


def _account(record: ConsumerRecord[bytes, bytes]) -> uuid.UUID | None:
    try:
        return uuid.UUID((record.key or b"").decode())
    except ValueError:
        return None


def _letter_key(letter_id: str) -> uuid.UUID:
    return uuid.uuid5(_LETTER_IDS, letter_id)


class DeadLetterDesk:
    """Lists and redrives the dead letters of one service's consumer."""

    def __init__(
        self, *, service: str, kafka: KafkaSettings, units: UnitOfWorkFactory, limit: int = 500
    ) -> None:
        self.service = service
        self.kafka = kafka
        self.units = units
        self.limit = limit
        self.topics = sorted(
            kafka.topic(f"{t.name}{DEAD_LETTER_SUFFIX}") for t in TOPICS if service in t.consumers
        )

    async def letters(self) -> list[DeadLetter]:
        """This consumer's dead letters, newest first, at most `limit`."""
        records = [r for r in await self._read() if self._mine(r)]
        records.sort(key=lambda r: r.timestamp, reverse=True)
        records = records[: self.limit]
        ids = [f"{r.topic}/{r.partition}/{r.offset}" for r in records]
        async with self.units() as work:
            driver = await work.driver()
            redriven = {
                row["event_id"]
                for row in await driver.fetch(
                    "SELECT event_id FROM inbox_message WHERE consumer = $1 "
                    "AND event_id = ANY($2::uuid[])",
                    REDRIVE_CONSUMER,
                    [_letter_key(i) for i in ids],
                )
            }
        return [
            self._letter(r, i, _letter_key(i) in redriven)
            for r, i in zip(records, ids, strict=True)
        ]

    async def redrive(
        self, letter_id: str, *, operator: str, reason: str, operator_id: str | None = None
    ) -> DeadLetter:
        """Send a letter back to its topic, once, and record it in the account's trail under
        the operator's name (and staff id)."""
        record = await self._find(letter_id)
        account_id = _account(record)
        if account_id is None:
            raise NotRedrivableError("this dead letter names no account: it cannot be handled")
        headers = _headers(record)
        original = {k: v for k, v in headers.items() if not k.startswith("x-dead-letter-")}
        original["content-type"] = headers.get(DLQ_CONTENT_TYPE_HEADER, "")
        original[REDRIVEN_FROM_HEADER] = letter_id
        topic = record.topic.removesuffix(DEAD_LETTER_SUFFIX)
        async with self.units() as work:
            if not await work.claim(REDRIVE_CONSUMER, _letter_key(letter_id)):
                raise AlreadyRedrivenError(letter_id)
            await write_record(
                await work.driver(),
                topic=topic,
                key=str(account_id),
                value=record.value,
                headers=original,
            )
            work.emit(
                DataAccessed(
                    account_id=account_id,
                    access_id=uuid.uuid4(),
                    actor=AccessActor.STAFF,
                    actor_id=operator_id or operator,
                    actor_name=operator,
                    purpose=AccessPurpose.BILLING_OPERATIONS,
                    reason=reason,
                    grant_id=None,
                    resource_type="dead-letter",
                    resource_id=letter_id,
                    accessed_at=datetime.now(UTC),
                )
            )
        return self._letter(record, letter_id, True)

    def _mine(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        return _headers(record).get(DLQ_CONSUMER_HEADER) == self.service

    def _letter(
        self, record: ConsumerRecord[bytes, bytes], letter_id: str, redriven: bool
    ) -> DeadLetter:
        headers = _headers(record)
        account = _account(record)
        return DeadLetter(
            id=letter_id,
            topic=record.topic.removesuffix(DEAD_LETTER_SUFFIX).removeprefix(
                self.kafka.topic_prefix
            ),
            kind=headers.get(DLQ_KIND_HEADER, ""),
            reason=headers.get(DLQ_REASON_HEADER, ""),
            origin=headers.get(DLQ_ORIGIN_HEADER, ""),
            account_id=str(account) if account else None,
            dead_lettered_at=datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
            size_bytes=len(record.value or b""),
            redriven=redriven,
        )

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.kafka.max_message_bytes + 64 * 1024,
            **client_security(self.kafka),
        )

    async def _read(self) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record of this service's dead-letter topics, read from the start."""
        consumer = self._consumer()
        await consumer.start()
        try:
            existing = await consumer.topics()
            partitions = [
                TopicPartition(topic, p)
                for topic in self.topics
                if topic in existing
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                return []
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.seek_to_beginning(*partitions)
            records: list[ConsumerRecord[bytes, bytes]] = []
            deadline = time.monotonic() + READ_TIMEOUT_S
            pending = {tp for tp in partitions if ends[tp] > 0}
            while pending and time.monotonic() < deadline:
                batch = await consumer.getmany(*pending, timeout_ms=200)
                for got in batch.values():
                    records.extend(got)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            return records
        finally:
            await consumer.stop()

    async def _find(self, letter_id: str) -> ConsumerRecord[bytes, bytes]:
        """The record a letter id names, if it is one of this consumer's dead letters."""
        parts = letter_id.rsplit("/", 2)
        if len(parts) != 3 or not all(whole_number(p) is not None for p in parts[1:]):
            raise DeadLetterNotFoundError(letter_id)
        topic, partition, offset = parts[0], int(parts[1]), int(parts[2])
        if topic not in self.topics:
            raise DeadLetterNotFoundError(letter_id)
        consumer = self._consumer()
        await consumer.start()
        try:
            await consumer.topics()
            if partition not in (consumer.partitions_for_topic(topic) or ()):
                raise DeadLetterNotFoundError(letter_id)
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            if not first <= offset < (await consumer.end_offsets([tp]))[tp]:
                raise DeadLetterNotFoundError(letter_id)
            consumer.seek(tp, offset)
            deadline = time.monotonic() + READ_TIMEOUT_S
            while time.monotonic() < deadline:
                batch = await consumer.getmany(tp, timeout_ms=200, max_records=1)
                for record in batch.get(tp, []):
                    if record.offset == offset and self._mine(record):
                        return record
                    raise DeadLetterNotFoundError(letter_id)
            raise TimeoutError(f"could not read dead letter {letter_id}")
        finally:
            await consumer.stop()


def dead_letter_routes(desk: DeadLetterDesk, operator_token: str) -> list[tuple[str, Any]]:
    """`GET /dead-letters`: this service's dead letters with their reasons (operators);
    `POST /dead-letters?id=<letter id>&reason=<why>&operator=<who>[&operator_id=<staff id>]`:
    send one back."""

    async def dead_letters(scope: Any) -> AsgiResponse:
        if (refused := operator_refusal(scope, operator_token)) is not None:
            return refused
        if scope["method"] != "POST":
            return json_response([letter.as_json() for letter in await desk.letters()])
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        limits = {"id": 400, "reason": 500, "operator": 200, "operator_id": 100}
        given = {name: query.get(name, [""])[-1].strip() for name in limits}
        for name, limit in limits.items():
            optional = name == "operator_id" and name not in query
            if not optional and (
                not given[name] or len(given[name]) > limit or not given[name].isprintable()
            ):
                return problem(
                    422, "Invalid field", f"{name}: 1 to {limit} printable characters", name
                )
        try:
            letter = await desk.redrive(
                given["id"],
                operator=given["operator"],
                reason=given["reason"],
                operator_id=given["operator_id"] or None,
            )
        except DeadLetterNotFoundError:
            return problem(404, "Not found", "no dead letter of this service has this id", "id")
        except AlreadyRedrivenError:
            return problem(409, "Conflict", "this dead letter was already sent back", "id")
        except NotRedrivableError as exc:
            return problem(422, "Invalid field", str(exc), "id")
        return json_response(letter.as_json(), status=202)

    handler = api_route(dead_letters, ("GET", "HEAD", "POST"))
    return [("/dead-letters", handler)]
