"""The dispatcher: one consumer per service decodes each message once and runs its handler in a
unit of work that claims the event in the inbox, so no handler can forget idempotency."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from typing import Any, TypeVar
from uuid import UUID

import orjson
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import propagate, trace

from shared.contracts import TOPICS, Envelope, EventData, envelope_of
from shared.contracts.envelope import producer_of
from shared.crypto import (
    DataKey,
    ForeignKeyError,
    KeyDestroyedError,
    decrypt_personal,
    key_ids_in,
    personal_paths,
)
from shared.errors import describe
from shared.kafka import DeadLetterPolicy, PermanentError, classify, subscriber_options
from shared.keystore import KeyStore
from shared.outbox import event_aad
from shared.settings import KafkaSettings
from shared.telemetry import Telemetry
from shared.unit_of_work import UnitsOfWork, Work

DataT = TypeVar("DataT", bound=EventData)
Handler = Callable[[Envelope[Any], Work], Awaitable[None]]
"""A handler gets the typed event and the unit of work it runs in; the dispatcher commits."""
BatchHandler = Callable[[list[Envelope[Any]], Work], Awaitable[None]]
"""A batch handler gets events of one type, each new to its inbox, in one unit of work."""
# The most records a batch subscriber takes from one fetch.
BATCH_MAX_RECORDS = 500

log = logging.getLogger(__name__)
_PRODUCERS: dict[str, tuple[str, ...]] = {topic.name: topic.producers for topic in TOPICS}


@dataclass(frozen=True)
class _Route:
    model: type[EventData]
    handler: Handler
    consumer: str
    batch: BatchHandler | None = None


class EventRoutes:
    """The event types a service handles, each with its handler, and the dispatch between them."""

    def __init__(self, service: str, telemetry: Telemetry) -> None:
        self.service = service
        self.telemetry = telemetry
        self.tracer = telemetry.tracer(__name__)
        self.units: UnitsOfWork | None = None
        self.keys: KeyStore | None = None
        self._routes: dict[str, _Route] = {}

    def bind(self, *, units: UnitsOfWork, keys: KeyStore) -> EventRoutes:
        """Give the dispatcher its unit-of-work factory and the key store that opens events."""
        self.units = units
        self.keys = keys
        return self

    def on(
        self, model: type[DataT]
    ) -> Callable[[Callable[[Envelope[DataT], Work], Awaitable[None]]], Handler]:
        """Register the handler of one event type; its inbox consumer is `<service>.<handler>`."""

        def register(handler: Callable[[Envelope[DataT], Work], Awaitable[None]]) -> Handler:
            if model.event_type in self._routes:
                raise ValueError(f"{self.service} already handles {model.event_type}")
            self._routes[model.event_type] = _Route(
                model, handler, f"{self.service}.{handler.__name__}"
            )
            return handler

        return register

    def on_batch(
        self, model: type[DataT]
    ) -> Callable[[Callable[[list[Envelope[DataT]], Work], Awaitable[None]]], BatchHandler]:
        """Register a handler of many events of one type at once (one unit of work, one inbox
        statement): the service's subscriber then takes records in batches. A batch whose
        handler fails is handled again one event at a time, so only a faulty event is retried
        and dead-lettered."""

        def register(
            handler: Callable[[list[Envelope[DataT]], Work], Awaitable[None]],
        ) -> BatchHandler:
            if model.event_type in self._routes:
                raise ValueError(f"{self.service} already handles {model.event_type}")

            async def one(event: Envelope[DataT], work: Work) -> None:
                await handler([event], work)

            self._routes[model.event_type] = _Route(
                model, one, f"{self.service}.{handler.__name__}", handler
            )
            return handler

        return register

    @property
    def batched(self) -> bool:
        """Whether any event type has a batch handler (the subscriber then takes batches)."""
        return any(route.batch is not None for route in self._routes.values())

    @property
    def event_types(self) -> list[str]:
        """The event types (= topic names) this service consumes."""
        return sorted(self._routes)

    async def decode(
        self, body: bytes, known_keys: Mapping[str, DataKey] | None = None
    ) -> tuple[_Route, Envelope[Any]]:
        """Parse, open and validate a message against its contract, once; invalid input raises.

        A personal field that is missing its seal, or whose seal fails, is refused: only a
        holder of the account's key can write one (a forged event cannot). `known_keys` are
        keys already fetched (a batch's); any other is looked up.
        """
        return await self._open(orjson.loads(body), known_keys)  # ValueError: invalid

    async def _open(
        self, raw: Any, known_keys: Mapping[str, DataKey] | None
    ) -> tuple[_Route, Envelope[Any]]:
        """Check, open and validate a parsed message (decode's work after the parse)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            raise PermanentError("not a CloudEvents envelope: no 'type'")
        route = self._routes.get(raw["type"])
        if route is None:
            raise PermanentError(f"no handler for event type {raw['type']!r}")
        producer = producer_of(str(raw.get("source", "")))
        if producer not in _PRODUCERS.get(route.model.event_type, ()):
            raise PermanentError(
                f"source {raw.get('source')!r} is not a declared producer of {raw['type']!r}"
            )
        paths = personal_paths(route.model)
        if paths and isinstance(raw.get("data"), dict):
            if self.keys is None:
                raise RuntimeError(f"{self.service}'s routes have no key store")
            subject = str(raw.get("subject"))
            aad = event_aad(raw["type"], str(raw.get("id")), subject)
            raw["data"] = await decrypt_personal(
                raw["data"], paths, _keys_of_account(self.keys, subject, known_keys), aad=aad
            )
        event = envelope_of(route.model).model_validate(raw)
        return route, event

    async def dispatch(self, body: bytes) -> bool:
        """Handle one message in a unit of work; False if the inbox knew it (a redelivery)."""
        if self.units is None:
            raise RuntimeError(f"{self.service}'s routes are not bound to a unit of work")
        try:
            route, event = await self.decode(body)
        except KeyDestroyedError:
            # The account was purged and its key destroyed: the event can never be read again.
            # That is the promise working, not a fault; remember it and go on.
            await self._record_unreadable(body)
            return False
        async with self.units() as work:
            if not await work.claim(route.consumer, event.id):
                self.telemetry.delivery.duplicates_skipped.labels(route.consumer).inc()
                return False
            await route.handler(event, work)
        return True

    async def dispatch_batch(self, records: Sequence[Any], policy: DeadLetterPolicy) -> None:
        """Handle a batch of records: each run of one batch-handled type in one unit of work,
        anything else (and any record that will not decode) one at a time through the
        dead-letter policy; only an outage comes out, and the whole batch is redelivered."""
        decoded: list[tuple[Any, _Route, Envelope[Any]]] = []
        parsed: list[tuple[Any, Any]] = []
        for record in records:
            try:
                parsed.append((record, orjson.loads(record.value)))
            except Exception:
                # Not JSON: refused on its own path, with the same reason and dead letter.
                await self._settle_alone(record, policy)
        known_keys = await self._sealing_keys([raw for _, raw in parsed])
        for record, raw in parsed:
            try:
                route, event = await self._open(raw, known_keys)
            except Exception as exc:
                if classify(exc) == "outage":
                    raise
                # Decoded again on its own path: the same retries, reason and dead letter.
                await self._settle_alone(record, policy)
                continue
            decoded.append((record, route, event))
        for route, run in groupby(decoded, key=lambda item: item[1]):
            items = list(run)
            if route.batch is not None:
                try:
                    with self._processing([record for record, _, _ in items]):
                        await self._handle_many(route, [event for _, _, event in items])
                    for record, _, _ in items:
                        policy.settled(record)
                    continue
                except Exception as exc:
                    if classify(exc) == "outage":
                        raise
                    log.warning(
                        "a batch of %d %s failed; handling them one at a time: %s",
                        len(items),
                        route.model.event_type,
                        describe(exc),
                    )
            for record, _, _ in items:
                await self._settle_alone(record, policy)

    async def _settle_alone(self, record: Any, policy: DeadLetterPolicy) -> None:
        with self._processing([record]):
            await policy.settle(record, partial(self.dispatch, record.value))

    def _processing(self, records: Sequence[Any]) -> Any:
        """The span of records handled together out of a fetched batch (FastStream's span is
        the batch's). One record: a child of the trace it carries, so a flow's trace goes on
        through a batch subscriber; several, or one that carries none: a child of the batch's,
        linked to theirs (the semantic conventions' batch processing)."""
        contexts = [propagate.extract(_trace_headers(record)) for record in records]
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": records[0].topic,
            "messaging.batch.message_count": len(records),
        }
        carried = trace.get_current_span(contexts[0]).get_span_context()
        if len(records) == 1 and carried.is_valid:
            batch = trace.get_current_span().get_span_context()
            return self.tracer.start_as_current_span(
                f"{records[0].topic} process",
                context=contexts[0],
                kind=trace.SpanKind.CONSUMER,
                links=[trace.Link(batch)] if batch.is_valid else None,
                attributes=attributes,
            )
        links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in contexts]
        return self.tracer.start_as_current_span(
            f"{records[0].topic} process",
            kind=trace.SpanKind.CONSUMER,
            links=[link for link in links if link.context.is_valid],
            attributes=attributes,
        )

    async def _sealing_keys(self, messages: Sequence[Any]) -> Mapping[str, DataKey]:
        """The keys that sealed the parsed messages' personal fields, fetched at once: a batch
        of a thousand accounts is one key-store query, not a thousand. What is not an event
        of ours is left for _open to refuse."""
        if self.keys is None:
            return {}
        key_ids: set[str] = set()
        for raw in messages:
            if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
                continue
            route = self._routes.get(raw["type"])
            if route is not None and isinstance(raw.get("data"), dict):
                key_ids |= key_ids_in(raw["data"], personal_paths(route.model))
        return await self.keys.keys(key_ids) if key_ids else {}

    async def _handle_many(self, route: _Route, events: list[Envelope[Any]]) -> None:
        """One unit of work for events of one type: claimed at once, the new ones handled."""
        assert self.units is not None
        assert route.batch is not None
        async with self.units() as work:
            fresh = await work.claim_many(route.consumer, [event.id for event in events])
            new: list[Envelope[Any]] = []
            for event in events:
                if event.id in fresh:
                    fresh.discard(event.id)  # a second copy in the batch is a duplicate too
                    new.append(event)
            skipped = len(events) - len(new)
            if skipped:
                self.telemetry.delivery.duplicates_skipped.labels(route.consumer).inc(skipped)
            if new:
                await route.batch(new, work)

    async def _record_unreadable(self, body: bytes) -> None:
        raw = orjson.loads(body)
        route = self._routes[raw["type"]]
        assert self.units is not None
        async with self.units() as work:
            await work.claim(route.consumer, UUID(str(raw["id"])))
        self.telemetry.delivery.unreadable_events.labels(route.model.event_type).inc()
        log.info(
            "%s event %s of a purged account skipped: its key is destroyed", raw["type"], raw["id"]
        )

    def subscribe(
        self, broker: KafkaBroker, kafka: KafkaSettings, dead_letters: DeadLetterPolicy
    ) -> None:
        """Add the service's single subscriber, in the consumer group named after the service;
        it takes batches when a handler takes them."""
        topics = [kafka.topic(name) for name in self.event_types]
        options = subscriber_options(
            group_id=f"{kafka.topic_prefix}{self.service}",
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        )
        if self.batched:

            async def on_events(body: Any, message: KafkaMessage) -> None:
                records = message.raw_message
                await self.dispatch_batch(
                    records if isinstance(records, tuple | list) else (records,), dead_letters
                )

            on_events.__name__ = f"{self.service}_event_batches"
            broker.subscriber(
                *topics,
                decoder=_raw_body,
                batch=True,
                max_records=BATCH_MAX_RECORDS,
                # A fetch answers with what has arrived once its wait ends: no extra wait.
                batch_timeout_ms=kafka.fetch_max_wait_ms,
                **options,
            )(on_events)
            return

        async def on_event(body: Any, message: KafkaMessage) -> None:
            await self.dispatch(message.body)

        on_event.__name__ = f"{self.service}_events"
        broker.subscriber(
            *topics,
            decoder=_raw_body,  # the dispatcher parses once; FastStream must not parse first
            # The group is the service, within the topic namespace: deployments (or test runs)
            # sharing a broker under different prefixes never rebalance one another.
            **options,
        )(on_event)


def _keys_of_account(
    keys: KeyStore, subject: str, known_keys: Mapping[str, DataKey] | None
) -> Callable[[str], Awaitable[DataKey]]:
    """Key lookup that refuses another account's key: a tenant cannot forge for another."""

    async def lookup(key_id: str) -> DataKey:
        key = (known_keys or {}).get(key_id) or await keys.key(key_id)
        if str(key.account_id) != subject:
            raise ForeignKeyError(key_id)
        return key

    return lookup


def _raw_body(message: Any) -> Any:
    """FastStream decoder that leaves the body as bytes."""
    return message.body


def _trace_headers(record: Any) -> dict[str, str]:
    """The W3C trace context a record's headers carry."""
    return {
        name: value.decode("latin-1")
        for name, value in record.headers or ()
        if name in ("traceparent", "tracestate") and isinstance(value, bytes)
    }
