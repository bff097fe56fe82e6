"""The dispatcher on FastStream's in-memory broker: one unit of work per message, the inbox claim
made by the dispatcher, classified errors, dead letters and declared producers."""

from __future__ import annotations

import errno
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from devstack.testing import RecordingUnits
from shared.contracts import (
    AccountTerminated,
    Envelope,
    PurgeCompleted,
    PurgeRequested,
    new_envelope,
)
from shared.kafka import DeadLetterPolicy, classify, create_broker
from shared.keystore import MemoryKeyStore
from shared.outbox import seal_envelope
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
        self.keys = MemoryKeyStore()
        routes = EventRoutes("billing", self.telemetry).bind(units=self.units, keys=self.keys)
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
                    rows_deleted=0,
                )
            )

        @routes.on(AccountTerminated)
        async def on_account_terminated(event: Envelope[AccountTerminated], work: Work) -> None:
            self.handled.append(event)

        routes.subscribe(self.broker, kafka, self.policy)

        @self.broker.subscriber("purge.requested.dlq", "account.terminated.dlq")
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


@pytest.mark.clause("TERMINATION")
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
    reason = wiring.dead[0].headers["x-dead-letter-reason"]
    assert reason.startswith("failed 2 times: RuntimeError")
    assert "handler bug" not in reason, "free text of a foreign error may hold personal data"


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
    import httpx
    from botocore.exceptions import ClientError, EndpointConnectionError

    request = httpx.Request("POST", "http://vault.example/v1/transit/decrypt/k")
    assert classify(httpx.ConnectError("refused", request=request)) == "outage", "Vault down"
    assert classify(httpx.ReadTimeout("slow", request=request)) == "outage"
    unavailable = httpx.Response(503, request=request)
    assert classify(httpx.HTTPStatusError("503", request=request, response=unavailable)) == (
        "outage"
    )
    forbidden = httpx.Response(403, request=request)
    assert classify(httpx.HTTPStatusError("403", request=request, response=forbidden)) == ("failed")
    assert classify(EndpointConnectionError(endpoint_url="http://s3.example")) == "outage"
    slow_down = {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}
    assert classify(ClientError(slow_down, "PutObject")) == "outage", "S3 overloaded"
    assert classify(ConnectionResetError()) == "outage"
    assert classify(OSError(errno.ENOSPC, "disk full")) == "outage"
    assert classify(FileNotFoundError()) == "invalid"
    assert classify(PermissionError()) == "invalid"
    assert classify(ValueError("bad")) == "invalid"
    assert classify(RuntimeError("bug")) == "failed"


class _DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter wraps: a driver error with its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"error {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "kind"),
    [
        ("57P03", "outage"),  # the database system is starting up (a restart, found by chaos)
        ("57P01", "outage"),  # terminating connection due to administrator command
        ("08006", "outage"),  # connection failure
        ("53300", "outage"),  # too many connections
        ("23505", "failed"),  # a unique violation is about the data, not the server
        ("42P01", "failed"),  # an undefined table is a bug
    ],
)
def test_a_database_that_cannot_serve_now_is_an_outage_whatever_wraps_it(
    sqlstate: str, kind: str
) -> None:
    """A PostgreSQL restart answers 57P03 for seconds: its messages wait, never dead-lettered."""
    from sqlalchemy.exc import DBAPIError

    wrapped = DBAPIError("SELECT 1", {}, _DriverError(sqlstate))
    assert classify(wrapped) == kind


def test_a_driver_that_lost_its_protocol_to_a_killed_database_is_an_outage() -> None:
    """PostgreSQL killed in the middle of a statement: asyncpg's InternalClientError, translated
    by SQLAlchemy's dialect, redelivers the event; it is never dead-lettered."""
    import asyncpg
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
    from sqlalchemy.exc import DBAPIError

    driver = asyncpg.exceptions.InternalClientError("got result for unknown protocol state 3")
    try:
        try:
            raise driver
        except asyncpg.exceptions.InternalClientError as error:
            raise AsyncAdapt_asyncpg_dbapi.InternalClientError(str(error), error) from error
    except AsyncAdapt_asyncpg_dbapi.Error as adapted:
        wrapped = DBAPIError.instance("SELECT 1", {}, adapted, AsyncAdapt_asyncpg_dbapi.Error)
    assert classify(wrapped) == "outage"
    assert classify(driver) == "outage"


def test_the_backoff_grows_across_redeliveries_and_a_stuck_record_is_reported() -> None:
    policy = DeadLetterPolicy(consumer="unit", telemetry=create_telemetry("unit"))

    class Record:
        topic, partition, offset = "invoice.issued", 0, 42

    counts = [policy.redelivered(Record()) for _ in range(policy.redelivery_alarm)]
    assert counts == list(range(1, policy.redelivery_alarm + 1))
    assert policy.stuck() == ["invoice.issued/0/42"]
    policy.settled(Record())
    assert policy.stuck() == []


def _terminated(account_id: Any = None) -> Any:
    return new_envelope(
        AccountTerminated(
            account_id=account_id or uuid4(),
            account_name="Acme Ltd",
            owner_email="ada@acme.example.com",
            terminated_at=datetime.now(UTC),
        ),
        source="billing",
    )


@pytest.mark.clause("TERMINATION")
async def test_sealed_personal_fields_reach_the_handler_opened() -> None:
    """TERMINATION: personal fields travel sealed with the account's key, handlers see them."""
    wiring = _Wiring()
    event = _terminated()
    key = await wiring.keys.key_for_writing(event.data.account_id)
    body = seal_envelope(event, key)
    assert b"ada@acme.example.com" not in body
    assert b"Acme Ltd" not in body
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(body, "account.terminated", headers=JSON)
    assert [e.data.owner_email for e in wiring.handled] == ["ada@acme.example.com"]


async def test_a_plaintext_or_forged_personal_field_is_dead_lettered() -> None:
    """Only a holder of the account's key can write an event with personal fields."""
    wiring = _Wiring()
    plaintext = _terminated()
    other_account_key = await wiring.keys.key_for_writing(uuid4())
    forged = seal_envelope(_terminated(), other_account_key)  # sealed, but with another key id
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(
            plaintext.model_dump_json().encode(), "account.terminated", headers=JSON
        )
        await broker.publish(forged, "account.terminated", headers=JSON)
    assert wiring.handled == []
    reasons = [d.headers["x-dead-letter-reason"] for d in wiring.dead]
    assert "not encrypted" in reasons[0]
    assert "belongs to another account" in reasons[1]
    assert all("ada@acme" not in reason for reason in reasons)


async def test_an_event_whose_key_was_destroyed_is_recorded_and_skipped() -> None:
    """After a purge the key is gone: the consumer records the event and moves on."""
    wiring = _Wiring()
    event = _terminated()
    body = seal_envelope(event, await wiring.keys.key_for_writing(event.data.account_id))
    await wiring.keys.destroy(event.data.account_id)
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish(body, "account.terminated", headers=JSON)
        await broker.publish(_purge(), "purge.requested", headers=JSON)
    assert [e.type for e in wiring.handled] == ["purge.requested"], "the consumer went on"
    assert wiring.dead == []
    assert ("billing.on_account_terminated", event.id) in wiring.units.inbox
    skipped = wiring.telemetry.registry.get_sample_value(
        "events_unreadable_key_destroyed_total", {"type": "account.terminated"}
    )
    assert skipped == 1.0


class _BatchWiring:
    """Routes with a batch handler of purge.requested (failing on chosen events) and a
    one-at-a-time handler of account.terminated."""

    def __init__(self, *, poison: set[UUID] | None = None, error: Exception | None = None):
        self.telemetry = create_telemetry("unit")
        kafka = KafkaSettings(bootstrap_servers="localhost:9", max_attempts=2, retry_backoff_s=0)
        self.policy = DeadLetterPolicy(
            consumer="unit", telemetry=self.telemetry, max_attempts=2, retry_backoff_s=0
        )
        self.broker: KafkaBroker = create_broker(
            service="unit", kafka=kafka, telemetry=self.telemetry, dead_letters=self.policy
        )
        self.units = RecordingUnits(source="billing")
        self.batches: list[list[UUID]] = []
        self.handled: list[UUID] = []
        self.dead: list[Any] = []
        routes = EventRoutes("billing", self.telemetry).bind(
            units=self.units, keys=MemoryKeyStore()
        )

        @routes.on_batch(PurgeRequested)
        async def on_purges(events: list[Envelope[PurgeRequested]], work: Work) -> None:
            self.batches.append([event.id for event in events])
            if any(event.id in (poison or set()) for event in events):
                raise error or RuntimeError("one bad event")
            self.handled.extend(event.id for event in events)

        @routes.on(AccountTerminated)
        async def on_account_terminated(event: Envelope[AccountTerminated], work: Work) -> None:
            self.handled.append(event.id)

        routes.subscribe(self.broker, kafka, self.policy)

        @self.broker.subscriber("purge.requested.dlq", "account.terminated.dlq")
        async def dead_letters(body: Any, message: KafkaMessage) -> None:
            self.dead.append(message)


def _purge_event() -> tuple[UUID, bytes]:
    event = new_envelope(PurgeRequested(account_id=uuid4(), saga_id=uuid4()), source="retention")
    return event.id, event.model_dump_json().encode()


async def test_a_batch_is_claimed_and_handled_in_one_unit_of_work_each_event_once() -> None:
    wiring = _BatchWiring()
    events = [_purge_event() for _ in range(5)]
    bodies = [body for _, body in events]
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish_batch(*bodies, bodies[0], topic="purge.requested", headers=JSON)
        await broker.publish_batch(*bodies[:2], topic="purge.requested", headers=JSON)
    ids = [event_id for event_id, _ in events]
    assert wiring.batches == [ids], "one handler call; the copy and the redelivery skipped"
    assert wiring.units.commits == 2, "one unit of work per batch"
    assert {event_id for _, event_id in wiring.units.inbox} == set(ids)
    skipped = wiring.telemetry.registry.get_sample_value(
        "inbox_duplicates_skipped_total", {"consumer": "billing.on_purges"}
    )
    assert skipped == 3.0
    assert wiring.dead == []


async def test_a_malformed_record_in_a_batch_is_dead_lettered_and_the_rest_handled() -> None:
    wiring = _BatchWiring()
    (first, one), (second, two) = _purge_event(), _purge_event()
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish_batch(one, b"{not json", two, topic="purge.requested", headers=JSON)
    assert wiring.handled == [first, second]
    assert len(wiring.dead) == 1
    assert wiring.dead[0].body == b"{not json"
    assert wiring.dead[0].headers["x-dead-letter-kind"] == "invalid"


async def test_a_failing_batch_is_handled_one_by_one_and_only_the_bad_event_dead_lettered() -> None:
    events = [_purge_event() for _ in range(4)]
    bad = events[2][0]
    wiring = _BatchWiring(poison={bad})
    async with TestKafkaBroker(wiring.broker) as broker:
        await broker.publish_batch(*[b for _, b in events], topic="purge.requested", headers=JSON)
    good = [event_id for event_id, _ in events if event_id != bad]
    assert sorted(wiring.handled) == sorted(good), "each good event handled once"
    assert len(wiring.dead) == 1
    assert wiring.dead[0].headers["x-dead-letter-reason"].startswith("failed 2 times")
    assert wiring.dead[0].body == events[2][1]
    assert bad not in {event_id for _, event_id in wiring.units.inbox}, "its claim rolled back"


async def test_an_outage_in_a_batch_redelivers_the_whole_batch_and_dead_letters_nothing() -> None:
    events = [_purge_event() for _ in range(3)]
    wiring = _BatchWiring(poison={events[0][0]}, error=ConnectionRefusedError(111, "refused"))
    async with TestKafkaBroker(wiring.broker) as broker:
        with pytest.raises(ConnectionRefusedError):  # nacked: every partition rewound
            await broker.publish_batch(
                *[b for _, b in events], topic="purge.requested", headers=JSON
            )
    assert wiring.handled == []
    assert wiring.dead == []
    assert wiring.units.inbox == set(), "nothing claimed: all of it comes again"


class _CountingKeys(MemoryKeyStore):
    """A key store that counts its lookups: one by id, and batched."""

    def __init__(self) -> None:
        super().__init__()
        self.single_reads = 0
        self.batch_reads = 0

    async def key(self, key_id: str) -> Any:
        self.single_reads += 1
        return await super().key(key_id)

    async def keys(self, key_ids: Any) -> Any:
        self.batch_reads += 1
        return await super().keys(key_ids)


def _sealed_terminations_wiring(keys: MemoryKeyStore) -> tuple[KafkaBroker, list[Any], list[Any]]:
    """Routes with a batch handler of account.terminated (sealed personal fields)."""
    telemetry = create_telemetry("unit")
    kafka = KafkaSettings(bootstrap_servers="localhost:9", max_attempts=2, retry_backoff_s=0)
    policy = DeadLetterPolicy(
        consumer="unit", telemetry=telemetry, max_attempts=2, retry_backoff_s=0
    )
    broker = create_broker(service="unit", kafka=kafka, telemetry=telemetry, dead_letters=policy)
    handled: list[Any] = []
    dead: list[Any] = []
    routes = EventRoutes("retention", telemetry).bind(
        units=RecordingUnits(source="retention"), keys=keys
    )

    @routes.on_batch(AccountTerminated)
    async def on_terminations(events: list[Envelope[AccountTerminated]], work: Work) -> None:
        handled.extend(events)

    routes.subscribe(broker, kafka, policy)

    @broker.subscriber("account.terminated.dlq")
    async def dead_letters(body: Any, message: KafkaMessage) -> None:
        dead.append(message)

    return broker, handled, dead


@pytest.mark.clause("TERMINATION")
async def test_a_sealed_batch_of_many_accounts_fetches_its_keys_at_once() -> None:
    """TERMINATION: a batch from a hundred accounts is opened with one key-store lookup, not a
    hundred (a consumer catching up after a restart meets every key cold)."""
    keys = _CountingKeys()
    broker, handled, dead = _sealed_terminations_wiring(keys)
    events = [_terminated() for _ in range(100)]
    bodies = [seal_envelope(e, await keys.key_for_writing(e.data.account_id)) for e in events]
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(*bodies, topic="account.terminated", headers=JSON)
    assert [e.data.owner_email for e in handled] == ["ada@acme.example.com"] * 100
    assert dead == []
    assert (keys.batch_reads, keys.single_reads) == (1, 0)


async def test_a_key_fetched_for_a_batch_still_opens_only_its_own_accounts_events() -> None:
    """A forged event sealed with another account's key (fetched with the batch) is refused;
    a destroyed key is still recorded and skipped; the rest of the batch is handled."""
    keys = _CountingKeys()
    broker, handled, dead = _sealed_terminations_wiring(keys)
    honest, forged, purged = _terminated(), _terminated(), _terminated()
    honest_key = await keys.key_for_writing(honest.data.account_id)
    purged_body = seal_envelope(purged, await keys.key_for_writing(purged.data.account_id))
    await keys.destroy(purged.data.account_id)
    bodies = [seal_envelope(forged, honest_key), purged_body, seal_envelope(honest, honest_key)]
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(*bodies, topic="account.terminated", headers=JSON)
    assert [e.id for e in handled] == [honest.id]
    assert len(dead) == 1
    assert dead[0].body == bodies[0]
    assert "belongs to another account" in dead[0].headers["x-dead-letter-reason"]
