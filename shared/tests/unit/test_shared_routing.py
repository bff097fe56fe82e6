"""The dispatcher on FastStream's in-memory broker: one unit of work per message, the inbox claim
made by the dispatcher, classified errors, dead letters and declared producers."""

from __future__ import annotations

import errno
from typing import Any
from uuid import uuid4

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devstack.testing import RecordingUnits
from shared.contracts import Envelope, PurgeCompleted, PurgeRequested, new_envelope
from shared.kafka import DeadLetterPolicy, classify, create_broker
from shared.routing import EventRoutes
from shared.settings import KafkaSettings
from shared.telemetry import create_telemetry
from shared.unit_of_work import Work

JSON = {"content-type": "application/json"}


def _purge(source: str = "retention") -> bytes:
    event = new_envelope(PurgeRequested(account_id=uuid4(), saga_id=uuid4()), source=source)
    return event.model_dump_json().encode()


class _Wiring:
    def __init__(
        self, *, max_attempts: int = 3, fail_times: int = 0, error: Exception | None = None
    ):
        self.telemetry = create_telemetry("unit")
        kafka = KafkaSettings(
            bootstrap_servers="localhost:9", max_attempts=max_attempts, retry_backoff_s=0
        )
        self.policy = DeadLetterPolicy(
            consumer="unit", telemetry=self.telemetry, max_attempts=max_attempts, retry_backoff_s=0
        )
        self.broker: KafkaBroker = create_broker(
            service="unit", kafka=kafka, telemetry=self.telemetry, dead_letters=self.policy
        )
        self.units = RecordingUnits(source="billing")
        self.handled: list[Envelope[Any]] = []
        self.dead: list[Any] = []
        routes = EventRoutes("billing", self.telemetry, self.units)
        calls = {"n": 0}

        @routes.on(PurgeRequested)
        async def on_purge_requested(event: Envelope[PurgeRequested], work: Work) -> None:
            calls["n"] += 1
            if calls["n"] <= fail_times:
                raise error or RuntimeError("handler bug")
            self.handled.append(event)
            work.emit(
                PurgeCompleted(
                    account_id=event.data.account_id,
                    saga_id=event.data.saga_id,
                    service="billing",
                    rows_deleted=0,
                )
            )

        routes.subscribe(self.broker, kafka)

        @self.broker.subscriber("purge.requested.dlq")
        async def dead_letters(body: Any, message: KafkaMessage) -> None:
            self.dead.append(message)


async def test_a_valid_event_reaches_its_handler_typed_inside_a_committed_unit_of_work() -> None:
    wiring = _Wiring()
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(_purge(), "purge.requested", headers=JSON)
    assert len(wiring.handled) == 1
    assert isinstance(wiring.handled[0].data, PurgeRequested)
    assert wiring.units.inbox == {("billing.on_purge_requested", wiring.handled[0].id)}
    assert [e.type for e in wiring.units.emitted] == ["purge.completed"]
    assert wiring.dead == []


async def test_a_redelivered_event_is_skipped_by_the_dispatcher_not_the_handler() -> None:
    wiring = _Wiring()
    body = _purge()
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(body, "purge.requested", headers=JSON)
        await broker.publish(body, "purge.requested", headers=JSON)
    assert len(wiring.handled) == 1, "the handler ran once"
    assert len(wiring.units.emitted) == 1, "its effect was committed once"
    skipped = wiring.telemetry.registry.get_sample_value(
        "inbox_duplicates_skipped_total", {"consumer": "billing.on_purge_requested"}
    )
    assert skipped == 1.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "JSONDecodeError"),
        (b"\xff\xfe", "DecodeError"),
        (b'{"type": "nobody.handles.this"}', "no handler"),
        (b'{"type": "purge.requested", "source": "/quittance/retention", "data": {}}', "Valid"),
    ],
)
async def test_invalid_messages_are_dead_lettered_with_a_reason(body: bytes, reason: str) -> None:
    wiring = _Wiring()
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(body, "purge.requested", headers=JSON)
        await broker.publish(_purge(), "purge.requested", headers=JSON)
    assert len(wiring.dead) == 1
    assert reason in wiring.dead[0].headers["x-dead-letter-reason"]
    assert wiring.dead[0].headers["x-dead-letter-kind"] == "invalid"
    assert wiring.dead[0].body == body
    assert len(wiring.handled) == 1, "the consumer goes on after a dead letter"


@pytest.mark.parametrize("source", ["billing", "audit", "someone-else"])
async def test_an_event_from_anyone_but_its_declared_producer_is_dead_lettered(
    source: str,
) -> None:
    """purge.requested is retention's alone: a forged one must not purge anything (TERMINATION)."""
    wiring = _Wiring()
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(_purge(source=source), "purge.requested", headers=JSON)
    assert wiring.handled == []
    assert len(wiring.dead) == 1
    assert "not a declared producer" in wiring.dead[0].headers["x-dead-letter-reason"]


async def test_a_transient_failure_is_retried_and_then_handled_once() -> None:
    wiring = _Wiring(max_attempts=3, fail_times=2)
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(_purge(), "purge.requested", headers=JSON)
    assert len(wiring.handled) == 1
    assert wiring.units.rollbacks == 2, "each failed attempt rolled its unit of work back"
    assert len(wiring.units.emitted) == 1
    assert wiring.dead == []


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_its_attempts() -> None:
    wiring = _Wiring(max_attempts=2, fail_times=99)
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(_purge(), "purge.requested", headers=JSON)
    assert wiring.handled == []
    assert wiring.units.emitted == []
    assert len(wiring.dead) == 1
    assert wiring.dead[0].headers["x-dead-letter-kind"] == "failed"
    assert (
        "failed 2 times: RuntimeError: handler bug"
        in wiring.dead[0].headers["x-dead-letter-reason"]
    )


@pytest.mark.parametrize(
    "permanent",
    [FileNotFoundError(errno.ENOENT, "No such file", "bundle.zip"), KeyError("missing")],
    ids=["missing-file", "missing-key"],
)
async def test_a_permanent_failure_is_dead_lettered_at_once_not_redelivered(
    permanent: Exception,
) -> None:
    """A missing file is no outage: it must not block the partition forever."""
    wiring = _Wiring(max_attempts=5, fail_times=99, error=permanent)
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(_purge(), "purge.requested", headers=JSON)
        await broker.publish(_purge(), "purge.requested", headers=JSON)
    assert len(wiring.dead) == 2
    assert wiring.units.rollbacks == 2, "one attempt each: no retry can find a missing file"
    assert type(permanent).__name__ in wiring.dead[0].headers["x-dead-letter-reason"]


@pytest.mark.parametrize(
    "outage",
    [ConnectionRefusedError(111, "connection refused"), TimeoutError("no answer")],
    ids=["refused", "timeout"],
)
async def test_a_server_outage_never_dead_letters_a_good_message(outage: Exception) -> None:
    wiring = _Wiring(max_attempts=1, fail_times=99, error=outage)
    async with TestKafkaBroker(wiring.broker) as broker:
        with pytest.raises(type(outage)):  # nacked: Kafka redelivers it from the same offset
            await broker.publish(_purge(), "purge.requested", headers=JSON)
    assert wiring.handled == []
    assert wiring.dead == []
    assert list(wiring.policy.redeliveries.values()) == [1], "counted for growing backoff"


def test_outages_are_told_apart_from_bad_messages_and_bugs() -> None:
    assert classify(ConnectionResetError()) == "outage"
    assert classify(OSError(errno.ENOSPC, "disk full")) == "outage"
    assert classify(FileNotFoundError()) == "invalid"
    assert classify(PermissionError()) == "invalid"
    assert classify(ValueError("bad")) == "invalid"
    assert classify(RuntimeError("bug")) == "failed"


def test_the_backoff_grows_across_redeliveries_and_a_stuck_record_is_reported() -> None:
    policy = DeadLetterPolicy(consumer="unit", telemetry=create_telemetry("unit"))

    class Record:
        topic, partition, offset = "invoice.issued", 0, 42

    counts = [policy.redelivered(Record()) for _ in range(policy.redelivery_alarm)]
    assert counts == list(range(1, policy.redelivery_alarm + 1))
    assert policy.stuck() == ["invoice.issued/0/42"]
    policy.settled(Record())
    assert policy.stuck() == []
