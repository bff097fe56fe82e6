"""One consumer per service: it reads all the service's topics and dispatches on the event type."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.contracts import Envelope, EventData
from shared.kafka import PermanentError, subscriber_options
from shared.settings import KafkaSettings
from shared.telemetry import Telemetry

DataT = TypeVar("DataT", bound=EventData)
Handler = Callable[[Envelope[Any], str], Awaitable[bool]]
"""A handler gets the event and its consumer name; it returns False for a redelivery it skipped."""


@dataclass(frozen=True)
class _Route:
    model: type[EventData]
    handler: Handler
    consumer: str


class EventRoutes:
    """The event types a service handles, each with its handler."""

    def __init__(self, service: str, telemetry: Telemetry) -> None:
        self.service = service
        self.telemetry = telemetry
        self._routes: dict[str, _Route] = {}

    def on(
        self, model: type[DataT]
    ) -> Callable[[Callable[[Envelope[DataT], str], Awaitable[bool]]], Handler]:
        """Register the handler of one event type; its inbox consumer is `<service>.<handler>`."""

        def register(handler: Callable[[Envelope[DataT], str], Awaitable[bool]]) -> Handler:
            self._routes[model.event_type] = _Route(
                model, handler, f"{self.service}.{handler.__name__}"
            )
            return handler

        return register

    @property
    def event_types(self) -> list[str]:
        """The event types (= topic names) this service consumes."""
        return sorted(self._routes)

    async def dispatch(self, body: bytes) -> None:
        """Validate a message against its contract and run its handler; invalid input raises."""
        raw = json.loads(body)  # ValueError: dead-lettered as invalid
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            raise PermanentError("not a CloudEvents envelope: no 'type'")
        route = self._routes.get(raw["type"])
        if route is None:
            raise PermanentError(f"no handler for event type {raw['type']!r}")
        event = Envelope[route.model].model_validate(raw)  # type: ignore[name-defined]
        if not await route.handler(event, route.consumer):
            self.telemetry.delivery.duplicates_skipped.labels(route.consumer).inc()

    def subscribe(self, broker: KafkaBroker, kafka: KafkaSettings) -> None:
        """Add the service's single subscriber, in the consumer group named after the service."""
        topics = [kafka.topic(name) for name in self.event_types]

        async def on_event(body: Any, message: KafkaMessage) -> None:
            await self.dispatch(message.body)

        on_event.__name__ = f"{self.service}_events"
        broker.subscriber(*topics, **subscriber_options(group_id=self.service))(on_event)
