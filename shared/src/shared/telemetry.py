"""OpenTelemetry traces, Prometheus metrics and JSON logs with trace ids, built per service."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge as GaugeData,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shared.otlp import OtlpHttpSpanExporter
from shared.telemetry_privacy import AllowListSpanExporter


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
    consumer_lag: Gauge = field(init=False)

    def __post_init__(self) -> None:
        self.consumer_lag = Gauge(
            "messaging_kafka_consumer_lag",
            "Records the consumer group has yet to read, per partition (high watermark minus"
            " position), as the consumer saw them at the scrape",
            [
                "messaging_consumer_group_name",
                "messaging_destination_name",
                "messaging_destination_partition_id",
            ],
            registry=self.registry,
        )
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


# OpenTelemetry's HTTP semantic conventions: known methods, duration buckets in seconds.
HTTP_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


@dataclass
class HttpMetrics:
    """Requests served, per method, route template and status (rate, errors and latency)."""

    registry: CollectorRegistry
    duration: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, by method, route template and status",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=self.registry,
        )


def _prometheus_name(name: str) -> str:
    """`quittance.audit.alerts` as Prometheus spells it: `quittance_audit_alerts`."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)


class OpenTelemetryMetrics(Collector):
    """Puts the instruments of a service's OpenTelemetry meters on its Prometheus `/metrics`,
    read at each scrape: code measures with the OpenTelemetry API, operators scrape one page."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self._reader = reader

    def collect(self) -> list[Metric]:
        """Each instrument as a Prometheus family: sums as counters (or gauges when they can
        fall), gauges as gauges, histograms with their buckets; attributes become labels."""
        data = self._reader.get_metrics_data()
        families: list[Metric] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for found in scope.metrics:
                    families.extend(_family(found.name, found.description or "", found.data))
        return families


def _family(name: str, description: str, data: Any) -> list[Metric]:
    name = _prometheus_name(name)
    points = list(data.data_points)
    labels = sorted({_prometheus_name(key) for point in points for key in point.attributes})

    def values(point: Any) -> list[str]:
        named = {_prometheus_name(k): str(v) for k, v in point.attributes.items()}
        return [named.get(label, "") for label in labels]

    family: Metric
    if isinstance(data, Sum) and data.is_monotonic:
        family = CounterMetricFamily(name, description, labels=labels)
        for point in points:
            family.add_metric(values(point), point.value)
    elif isinstance(data, Sum | GaugeData):
        family = GaugeMetricFamily(name, description, labels=labels)
        for point in points:
            family.add_metric(values(point), point.value)
    elif isinstance(data, HistogramData):
        family = HistogramMetricFamily(name, description, labels=labels)
        for point in points:
            cumulative, buckets = 0, []
            for bound, count in zip(
                [*point.explicit_bounds, float("inf")], point.bucket_counts, strict=True
            ):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            family.add_metric(values(point), buckets, point.sum)
    else:
        return []
    return [family]


class RecentSpans(SpanExporter):
    """The service's latest spans, kept in memory when no collector is set: the ops dashboard
    shows them as recent traces. Bounded; fed through the allow-list like every exporter."""

    def __init__(self, service: str, capacity: int = 5000) -> None:
        self.service = service
        # The spans as they ended; summarised only when an operator asks (most never are).
        self._spans: deque[ReadableSpan] = deque(maxlen=capacity)
        self._lock = threading.Lock()  # the export thread appends while requests read

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Keep the spans."""
        with self._lock:
            self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def _row(self, span: ReadableSpan) -> dict[str, Any]:
        context, parent = span.context, span.parent
        trace_id, span_id = (context.trace_id, context.span_id) if context else (0, 0)
        start, end = span.start_time or 0, span.end_time or span.start_time or 0
        return {
            "trace_id": format(trace_id, "032x"),
            "span_id": format(span_id, "016x"),
            "parent_id": format(parent.span_id, "016x") if parent is not None else None,
            "service": self.service,
            "name": span.name,
            "kind": span.kind.name.lower(),
            "started_at": datetime.fromtimestamp(start / 1e9, UTC).isoformat(),
            "duration_ms": round((end - start) / 1e6, 3),
            "error": span.status.status_code is trace.StatusCode.ERROR,
            "attributes": {
                k: v if isinstance(v, str | int | float | bool) else str(v)
                for k, v in (span.attributes or {}).items()
            },
        }

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` spans, oldest first."""
        with self._lock:
            spans = list(self._spans)[-limit:]
        return [self._row(span) for span in spans]

    def shutdown(self) -> None:
        """Nothing to flush: the spans live in memory."""


_UNSET, _ERROR = Status(StatusCode.UNSET), Status(StatusCode.ERROR)


@dataclass
class FinishedSpan:
    """What a block sets on its span before the span is recorded: its name, attributes and
    whether it failed."""

    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    error: bool = False


class SpanRecorder:
    """Records spans whose whole content is known when they end (a statement the driver has
    run, a request once answered), handing them to the span processors as finished spans.

    The SDK's live span (a lock, bounded containers, a check per attribute) costs ~15 µs of
    this project's 2-core host each, a finished span ~3: these are the spans every request
    makes. Each still passes the provider's sampler and leaves through the processors, so
    through the allow-list, like any other. A child follows its parent's sampling, as the
    services' ParentBased sampler does. Inside `current`, the current span is not recording:
    what the block wants on its span, it sets on the FinishedSpan it is given.
    """

    def __init__(self, provider: TracerProvider, processors: SpanProcessor, scope: str) -> None:
        self._provider = provider
        self._ids = provider.id_generator
        self._processors = processors
        self._scope = InstrumentationScope(scope)

    def child(
        self,
        name: str,
        *,
        kind: SpanKind,
        start_time: int,
        end_time: int,
        attributes: dict[str, Any],
        error: bool = False,
        parent: SpanContext | None = None,
    ) -> None:
        """Record a finished span under `parent` (the current span by default), as a sampled
        parent's children are sampled; nothing under an unsampled or absent one."""
        if parent is None:
            parent = trace.get_current_span().get_span_context()
        if not (parent.is_valid and parent.trace_flags.sampled):
            return
        context = SpanContext(
            parent.trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        self._end(name, context, parent, kind, start_time, end_time, attributes, error)

    @contextmanager
    def current(
        self, name: str, *, kind: SpanKind, parent: otel_context.Context | None = None
    ) -> Iterator[FinishedSpan]:
        """A span that is current inside the block (its children and the events the block
        emits carry its ids) and is recorded, as the block left it, when the block ends."""
        parent_span = trace.get_current_span(parent).get_span_context()
        trace_id = parent_span.trace_id if parent_span.is_valid else self._ids.generate_trace_id()
        sampling = self._provider.sampler.should_sample(parent, trace_id, name, kind)
        sampled = sampling.decision.is_sampled()  # type: ignore[no-untyped-call]
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=trace.TraceFlags(
                trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT
            ),
            trace_state=sampling.trace_state,
        )
        span = FinishedSpan(name)
        started = time.time_ns()
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(context)))
        try:
            yield span
        finally:
            otel_context.detach(token)
            if sampled:
                self._end(
                    span.name,
                    context,
                    parent_span if parent_span.is_valid else None,
                    kind,
                    started,
                    time.time_ns(),
                    span.attributes,
                    span.error,
                )

    def _end(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_time: int,
        end_time: int,
        attributes: dict[str, Any],
        error: bool,
    ) -> None:
        # The SDK asks for its spans to come from its tracer; these are built as its tracer
        # would end them, for the processors that take any finished span.
        self._processors.on_end(
            ReadableSpan(
                name=name,
                context=context,
                parent=parent,
                resource=self._provider.resource,
                attributes=attributes,
                kind=kind,
                status=_ERROR if error else _UNSET,
                start_time=start_time,
                end_time=end_time,
                instrumentation_scope=self._scope,
            )
        )


@dataclass
class Telemetry:
    """A service's tracer provider, meter provider and metrics registry."""

    service: str
    tracer_provider: TracerProvider
    registry: CollectorRegistry
    delivery: DeliveryMetrics
    http: HttpMetrics
    processors: SpanProcessor  # the provider's, which spans recorded finished go to
    meter_provider: MeterProvider | None = None
    recent: RecentSpans | None = None  # kept in process when no collector is set

    def tracer(self, name: str) -> trace.Tracer:
        """Return a tracer of this service."""
        return self.tracer_provider.get_tracer(name)

    def recorder(self, name: str) -> SpanRecorder:
        """Return a recorder of finished spans of this service (see SpanRecorder)."""
        return SpanRecorder(self.tracer_provider, self.processors, name)

    def meter(self, name: str) -> metrics.Meter:
        """Return a meter of this service; what it measures is on the service's `/metrics`."""
        if self.meter_provider is None:
            return metrics.NoOpMeter(name)
        return self.meter_provider.get_meter(name)

    def shutdown(self) -> None:
        """Flush and stop span export."""
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def create_telemetry(
    service: str,
    *,
    otlp_endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    tracing: bool = True,
) -> Telemetry:
    """Build tracing (OTLP when an endpoint is set) and a fresh metrics registry; without
    tracing, spans are not recorded at all (the sampler drops them)."""
    processors = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(ALWAYS_ON) if tracing else ALWAYS_OFF,
        active_span_processor=processors,
    )
    # Every span leaves the process through the allow-list, whichever exporter takes it.
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(AllowListSpanExporter(exporter)))
    if otlp_endpoint:
        otlp = OtlpHttpSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(AllowListSpanExporter(otlp)))
    recent = RecentSpans(service) if tracing and not otlp_endpoint else None
    if recent is not None:
        provider.add_span_processor(
            BatchSpanProcessor(AllowListSpanExporter(recent), schedule_delay_millis=1000)
        )
    registry = CollectorRegistry()
    # Each service its own meter provider, never the global one: tests run several in a process.
    reader = InMemoryMetricReader()
    registry.register(OpenTelemetryMetrics(reader))
    meters = MeterProvider(resource=provider.resource, metric_readers=[reader])
    return Telemetry(
        service,
        provider,
        registry,
        DeliveryMetrics(registry),
        HttpMetrics(registry),
        processors,
        meters,
        recent,
    )


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def route_template(scope: Scope) -> str | None:
    """The matched route's template (`/invoices/{invoice_id}`), never the path with its values;
    None before routing or when nothing matched."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else None


@dataclass(frozen=True)
class MatchedRoute:
    """What the request middleware reads of a matched route that is an exact path (FastStream's
    routes, the operator routes billing mounts): the path, with nothing in it to hide."""

    path: str


class NamedRoute:
    """An ASGI app mounted at an exact path that tells the request telemetry its route (a plain
    Starlette route, unlike FastAPI's, leaves none in the scope)."""

    def __init__(self, path: str, app: Callable[..., Awaitable[None]]) -> None:
        self.path = path
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Name the route, then serve."""
        scope["route"] = MatchedRoute(self.path)
        await self.app(scope, receive, send)


# Scrapes and probes: measured by whoever calls them, not worth a span each.
UNOBSERVED_PATHS = frozenset({"/healthz", "/metrics"})


class RequestTelemetryMiddleware:
    """One server span and one duration sample per HTTP request, named by the route template.

    Nothing from the URL but the template reaches telemetry (a path holds ids, a query string
    can hold personal data), and unknown methods count as `_OTHER`, so a client cannot mint
    labels. Leaner than OpenTelemetry's ASGI instrumentation, which cost a tenth of billing's
    CPU per request on the issuing path.
    """

    def __init__(
        self, app: ASGIApp, *, telemetry: Telemetry, excluded_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.spans = telemetry.recorder(__name__)
        self.duration = telemetry.http.duration
        self.excluded_paths = excluded_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request inside its span, then record its duration."""
        if scope["type"] != "http" or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in HTTP_METHODS else "_OTHER"
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        parent = propagate.extract(carrier) if carrier else None
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # Semantic conventions: a span of an unknown method is named "HTTP".
        name = "HTTP" if method == "_OTHER" else method
        with self.spans.current(name, kind=SpanKind.SERVER, parent=parent) as span:
            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                # Nothing of an exception is recorded: its message may quote personal data.
                route = route_template(scope)
                if route is not None:
                    span.name = f"{name} {route}"
                    span.attributes["http.route"] = route
                span.attributes["http.request.method"] = method
                span.attributes["http.response.status_code"] = status
                span.attributes["url.scheme"] = scope.get("scheme", "http")
                span.error = status >= 500
                self.duration.labels(method, route or "", str(status)).observe(
                    time.perf_counter() - started
                )


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
