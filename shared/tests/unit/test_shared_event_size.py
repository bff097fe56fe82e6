"""Events the broker would refuse are refused when they are added to the outbox."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.contracts import PurgeRequested, new_envelope
from shared.kafka import is_valid_topic_name
from shared.keystore import MemoryKeyStore
from shared.outbox import (
    EventTooLargeError,
    Outbox,
    StagedEvent,
    check_event_size,
    trace_headers,
)
from shared.settings import KafkaSettings

_COLUMNS = ("event_id", "topic", "key", "payload", "headers", "replayable")


class _Connection:
    """Stands in for a connection inside its transaction, its adapter and its asyncpg driver."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.dbapi_connection = self.driver_connection = self
        self.autocommit, self._transaction = False, object()

    async def get_raw_connection(self) -> _Connection:
        return self

    async def execute(self, statement: str, *row: Any) -> None:
        await self.executemany(statement, [row])

    async def executemany(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        assert "INSERT INTO outbox_message" in statement
        self.rows.extend(dict(zip(_COLUMNS, row, strict=True)) for row in rows)


class _Session:
    """Stands in for an AsyncSession: the outbox only asks for its connection."""

    def __init__(self) -> None:
        self.inserted = _Connection()

    async def connection(self) -> _Connection:
        return self.inserted


def _staged(data: Any, replayable: bool = True) -> StagedEvent:
    return StagedEvent(new_envelope(data, source="test"), replayable, trace_headers())


def test_an_event_within_the_limit_passes() -> None:
    check_event_size(b"x" * 1000, {"content-type": "application/json"}, limit=2000)


def test_an_event_over_the_limit_is_refused_with_its_size_and_the_limit_but_not_its_content() -> (
    None
):
    payload = b"SECRET" * 400
    with pytest.raises(EventTooLargeError) as refused:
        check_event_size(payload, {"content-type": "application/json"}, limit=2000)
    message = str(refused.value)
    assert "2000" in message
    assert str(len(payload) + len("content-type") + len("application/json") + 512) in message
    assert "SECRET" not in message
    assert isinstance(refused.value, ValueError)


def test_headers_count_toward_the_size() -> None:
    with pytest.raises(EventTooLargeError):
        check_event_size(b"x" * 100, {"traceparent": "y" * 2000}, limit=2000)


async def test_the_outbox_refuses_an_oversize_event_and_writes_nothing() -> None:
    # Below what settings accept, so that a small event is already too large.
    kafka = KafkaSettings().model_copy(update={"max_message_bytes": 600})
    outbox = Outbox(source="test", kafka=kafka, keys=MemoryKeyStore())
    session = _Session()
    small = PurgeRequested(account_id=uuid.uuid4(), saga_id=uuid.uuid4())
    with pytest.raises(EventTooLargeError):
        await outbox.write(session.inserted, [_staged(small), _staged(small)])
    assert session.inserted.rows == [], "not even the events before it"


async def test_the_outbox_stores_whether_an_event_may_be_replayed() -> None:
    outbox = Outbox(source="test", kafka=KafkaSettings(), keys=MemoryKeyStore())
    session = _Session()
    data = PurgeRequested(account_id=uuid.uuid4(), saga_id=uuid.uuid4())
    await outbox.write(session.inserted, [_staged(data), _staged(data, False)])
    assert [row["replayable"] for row in session.inserted.rows] == [True, False]


async def test_the_producer_and_the_outbox_agree_on_the_limit() -> None:
    from shared.kafka import create_producer

    kafka = KafkaSettings(max_message_bytes=2_000_000)
    producer = create_producer(kafka, client_id="test")
    assert producer._max_request_size == kafka.max_message_bytes
    assert KafkaSettings().max_message_bytes == 1_000_000, "Kafka's default message.max.bytes"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("invoice.issued", True),
        ("t0a1b2.purge.requested.dlq", True),
        ("a" * 249, True),
        ("a" * 250, False),
        ("", False),
        (".", False),
        ("..", False),
        ("no spaces", False),
        ("é", False),
    ],
)
def test_topic_names_follow_kafkas_rule(name: str, valid: bool) -> None:
    assert is_valid_topic_name(name) is valid
