"""OpenTelemetry traces, Prometheus metrics and JSON logs with trace ids, built per service."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class DeliveryMetrics:
    """Counters of the delivery mechanisms: outbox relay, inbox and dead letters."""

    registry: CollectorRegistry
    relayed: Counter = field(init=False)
    relay_batch_seconds: Histogram = field(init=False)
    parked: Counter = field(init=False)
    backlog: Gauge = field(init=False)
    oldest_unpublished_age: Gauge = field(init=False)
    broker_recoveries: Counter = field(init=False)
    republished: Counter = field(init=False)
    dead_lettered: Counter = field(init=False)
    duplicates_skipped: Counter = field(init=False)
    unreadable_events: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.unreadable_events = Counter(
            "events_unreadable_key_destroyed",
            "Events skipped because their account was purged and its key destroyed",
            ["type"],
            registry=self.registry,
        )
        self.relayed = Counter(
            "outbox_relayed_events",
            "Events the outbox relay published",
            ["topic"],
            registry=self.registry,
        )
        self.relay_batch_seconds = Histogram(
            "outbox_relay_batch_seconds",
            "Time from handing an outbox batch to the producer to its last acknowledgement",
            registry=self.registry,
        )
        self.parked = Counter(
            "outbox_parked_events",
            "Outbox events parked because no broker will ever accept them (alert on any)",
            ["kind"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "outbox_backlog_events",
            "Outbox events waiting to be published (counted up to 100000)",
            registry=self.registry,
        )
        self.oldest_unpublished_age = Gauge(
            "outbox_oldest_unpublished_age_seconds",
            "Age of the oldest outbox event still waiting to be published",
            registry=self.registry,
        )
        self.broker_recoveries = Counter(
            "outbox_broker_recoveries",
            "Times the relay found that the broker had forgotten acknowledged events",
            registry=self.registry,
        )
        self.republished = Counter(
            "outbox_republished_events",
            "Acknowledged events published again because the broker had forgotten them",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "dead_lettered_messages",
            "Messages sent to a dead-letter topic",
            ["topic", "kind"],
            registry=self.registry,
        )
        self.duplicates_skipped = Counter(
            "inbox_duplicates_skipped",
            "Redelivered events the inbox recognised",
            ["consumer"],
            registry=self.registry,
        )


@dataclass
class Telemetry:
    """A service's tracer provider and metrics registry."""

    service: str
    tracer_provider: TracerProvider
    registry: CollectorRegistry
    delivery: DeliveryMetrics

    def tracer(self, name: str) -> trace.Tracer:
        """Return a tracer of this service."""
        return self.tracer_provider.get_tracer(name)

    def shutdown(self) -> None:
        """Flush and stop span export."""
        self.tracer_provider.shutdown()


def create_telemetry(
    service: str, *, otlp_endpoint: str | None = None, exporter: SpanExporter | None = None
) -> Telemetry:
    """Build tracing (OTLP when an endpoint is set) and a fresh metrics registry."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces"))
        )
    registry = CollectorRegistry()
    return Telemetry(service, provider, registry, DeliveryMetrics(registry))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr as JSON; called once by a service's entry point."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "faststream", "aiokafka"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("aiokafka").setLevel("WARNING")
    # The access log writes every path and query string, which can hold personal data (an
    # email in a filter, an id); uvicorn logs a request whenever this logger has a handler
    # anywhere up its tree, whatever --no-access-log said, so it gets none and stops here.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    access.disabled = True
