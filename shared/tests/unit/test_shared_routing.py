"""Handler unit tests on FastStream's in-memory broker: dispatch by type, retries, dead letters."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.contracts import Envelope, PurgeRequested, new_envelope
from shared.kafka import DeadLetterPolicy, create_broker
from shared.routing import EventRoutes
from shared.settings import KafkaSettings
from shared.telemetry import create_telemetry


def _purge() -> bytes:
    event = new_envelope(PurgeRequested(account_id=uuid4(), saga_id=uuid4()), source="retention")
    return event.model_dump_json().encode()


def _wire(
    *, max_attempts: int = 3, fail_times: int = 0, error: Exception | None = None
) -> tuple[KafkaBroker, list[Any], list[Any]]:
    telemetry = create_telemetry("unit")
    kafka = KafkaSettings(
        bootstrap_servers="localhost:9", max_attempts=max_attempts, retry_backoff_s=0
    )
    policy = DeadLetterPolicy(
        consumer="unit", telemetry=telemetry, max_attempts=max_attempts, retry_backoff_s=0
    )
    broker = create_broker(service="unit", kafka=kafka, telemetry=telemetry, dead_letters=policy)
    handled: list[Any] = []
    dead: list[Any] = []
    routes = EventRoutes("unit", telemetry)
    calls = {"n": 0}

    @routes.on(PurgeRequested)
    async def on_purge_requested(event: Envelope[PurgeRequested], consumer: str) -> bool:
        calls["n"] += 1
        if calls["n"] <= fail_times:
            raise error or RuntimeError("handler bug")
        handled.append((event, consumer))
        return True

    routes.subscribe(broker, kafka)

    @broker.subscriber("purge.requested.dlq")
    async def dead_letters(body: Any, message: KafkaMessage) -> None:
        dead.append(message)

    return broker, handled, dead


async def test_a_valid_event_reaches_its_handler_with_its_consumer_name() -> None:
    broker, handled, dead = _wire()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            _purge(), "purge.requested", headers={"content-type": "application/json"}
        )
    assert len(handled) == 1
    assert handled[0][1] == "unit.on_purge_requested"
    assert dead == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "JSONDecodeError"),
        (b'{"type": "nobody.handles.this"}', "no handler"),
        (b'{"type": "purge.requested", "data": {}}', "ValidationError"),
    ],
)
async def test_invalid_messages_are_dead_lettered_with_a_reason(body: bytes, reason: str) -> None:
    broker, handled, dead = _wire()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            body, "purge.requested", headers={"content-type": "application/json"}
        )
        await test_broker.publish(
            _purge(), "purge.requested", headers={"content-type": "application/json"}
        )
    assert len(dead) == 1
    assert reason in dead[0].headers["x-dead-letter-reason"]
    assert dead[0].headers["x-dead-letter-kind"] == "invalid"
    assert dead[0].body == body
    assert len(handled) == 1, "the consumer goes on after a dead letter"


async def test_a_transient_failure_is_retried_and_then_handled() -> None:
    broker, handled, dead = _wire(max_attempts=3, fail_times=2)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            _purge(), "purge.requested", headers={"content-type": "application/json"}
        )
    assert len(handled) == 1
    assert dead == []


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_its_attempts() -> None:
    broker, handled, dead = _wire(max_attempts=2, fail_times=99)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            _purge(), "purge.requested", headers={"content-type": "application/json"}
        )
    assert handled == []
    assert len(dead) == 1
    assert dead[0].headers["x-dead-letter-kind"] == "failed"
    assert "failed 2 times: RuntimeError: handler bug" in dead[0].headers["x-dead-letter-reason"]


@pytest.mark.parametrize(
    "outage",
    [ConnectionRefusedError(111, "connection refused"), TimeoutError("no answer")],
    ids=["refused", "timeout"],
)
async def test_a_server_outage_never_dead_letters_a_good_message(outage: Exception) -> None:
    broker, handled, dead = _wire(max_attempts=1, fail_times=99, error=outage)
    async with TestKafkaBroker(broker) as test_broker:
        with pytest.raises(type(outage)):  # nacked: Kafka redelivers it from the same offset
            await test_broker.publish(
                _purge(), "purge.requested", headers={"content-type": "application/json"}
            )
    assert handled == []
    assert dead == []
