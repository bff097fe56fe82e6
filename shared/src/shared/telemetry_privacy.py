"""What telemetry may carry (USE, PURPOSE): span attributes, metric labels and log fields pass
an allow-list, and no name the contracts mark personal is ever allowed, whoever adds it.

Spans are filtered where they leave the process (every exporter is wrapped), metric samples
where they are exposed (`/metrics`), and log records are written with a fixed set of fields.
What is dropped is counted and its name logged once, never its value.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from shared.contracts import EVENT_TYPES
from shared.crypto import personal_paths

log = logging.getLogger(__name__)

# OpenTelemetry semantic-convention attributes the services and their libraries set, whose
# values are templates, ids, counts and states: never a value a customer typed.
SPAN_ATTRIBUTES = frozenset(
    {
        "http.request.method",
        "http.response.status_code",
        "http.route",
        "url.scheme",
        "server.address",
        "server.port",
        "network.peer.address",
        "network.peer.port",
        "network.protocol.name",
        "messaging.system",
        "messaging.operation",
        "messaging.operation.name",
        "messaging.operation.type",
        "messaging.batch.message_count",
        "messaging.destination.name",
        "messaging.destination_publish.name",
        "messaging.destination.partition.id",
        "messaging.consumer.group.name",
        "messaging.kafka.consumer.group",
        "messaging.kafka.destination.partition",
        "messaging.kafka.message.key",  # an account id
        "messaging.kafka.message.offset",
        "messaging.kafka.offset",
        "messaging.message.id",
        "messaging.message.conversation_id",
        "messaging.message.payload_size_bytes",
        "messaging.message.body.size",
        "db.system",
        "db.system.name",
        "db.operation.name",
        "db.namespace",  # the service's database
        "db.collection.name",  # a table
        "error.type",
        "exception.type",
        "exception.escaped",
    }
)
# The services' own attributes (ids and states); a personal name is refused even here.
SPAN_ATTRIBUTE_PREFIX = "quittance."
# Label names of the metrics the services expose (Prometheus and OpenTelemetry meters).
METRIC_LABELS = frozenset(
    {
        "app_name",
        "broker",
        "handler",
        "destination",
        "exception_type",
        "http_request_method",
        "http_response_status_code",
        "http_route",
        "messaging_system",
        "messaging_consumer_group_name",
        "messaging_destination_name",
        "messaging_destination_partition_id",
        "topic",
        "partition",
        "group",
        "consumer",
        "kind",
        "type",
        "outcome",
        "status",
        "step",
        "state",
        "needs_person",
        "dry_run",
        "what",
        "le",
        "quantile",
    }
)
# The fields of a log line; the formatter writes these and nothing else.
LOG_FIELDS = ("time", "level", "service", "logger", "message", "trace_id", "span_id", "exception")


@functools.cache
def personal_names() -> frozenset[str]:
    """The names of the fields the contracts mark personal (`email`, `name`, `reason`...)."""
    return frozenset(
        path.rsplit(".", 1)[-1].removesuffix("[]")
        for model in EVENT_TYPES.values()
        for path in personal_paths(model)
    )


@functools.cache
def span_attribute_allowed(key: str) -> bool:
    """Whether a span attribute may leave the process: a reviewed convention, or one of ours
    whose name is not one the contracts mark personal (`quittance.customer.email` never is)."""
    if key in SPAN_ATTRIBUTES:
        return True
    parts = key.split(".")
    return key.startswith(SPAN_ATTRIBUTE_PREFIX) and not personal_names() & set(parts)


@functools.cache
def metric_label_allowed(name: str) -> bool:
    """Whether a metric label may be exposed (a personal name never may)."""
    return name in METRIC_LABELS and name not in personal_names()


class Dropped:
    """Counts what the allow-lists dropped, and logs each name the first time."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"span attribute": 0, "metric label": 0}
        self._named: set[str] = set()

    def note(self, what: str, name: str) -> None:
        """Count one dropped name; log it the first time."""
        self.counts[what] = self.counts.get(what, 0) + 1
        if name not in self._named and len(self._named) < 1000:
            self._named.add(name)
            log.warning("telemetry %s %.100r is not on the allow-list: dropped", what, name)


DROPPED = Dropped()


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if span_attribute_allowed(key):
            kept[key] = value
        else:
            DROPPED.note("span attribute", key)
    return kept


def _clean(span: ReadableSpan) -> bool:
    """Whether a span carries nothing to drop (most do): it then leaves as it is."""
    return (
        not span.events
        and span.status.description is None
        and all(span_attribute_allowed(key) for key in span.attributes or ())
        and all(span_attribute_allowed(k) for link in span.links for k in link.attributes or ())
    )


def allowed_span(span: ReadableSpan) -> ReadableSpan:
    """Span with only allowed attributes, on it, its events and its links; the status keeps
    its code, not its description (an exception's message may quote a value)."""
    if _clean(span):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attributes(span.attributes),
        events=[
            Event(event.name, _attributes(event.attributes), event.timestamp)
            for event in span.events
        ],
        links=[Link(link.context, _attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class AllowListSpanExporter(SpanExporter):
    """Hands an exporter the spans with only their allowed attributes."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export the filtered copies."""
        return self.inner.export([allowed_span(span) for span in spans])

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)


class AllowedMetrics:
    """A registry's metrics with only the samples whose label names are all allowed, and the
    count of what the allow-lists dropped (an alert: some code tried to export a value)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        """Each family, without the samples that carry a label not on the allow-list."""
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if self._allowed(s.labels)]
            yield family
        dropped = CounterMetricFamily(
            "quittance_telemetry_dropped",
            "Span attributes and metric labels the telemetry allow-list dropped.",
            labels=["what"],
        )
        for what, count in sorted(DROPPED.counts.items()):
            dropped.add_metric([what], count)
        yield dropped

    @staticmethod
    def _allowed(labels: Iterable[str]) -> bool:
        refused = [name for name in labels if not metric_label_allowed(name)]
        for name in refused:
            DROPPED.note("metric label", name)
        return not refused
