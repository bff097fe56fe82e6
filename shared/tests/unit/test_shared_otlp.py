"""The leaner OTLP encoder writes what OpenTelemetry's own encoder writes, for any span."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from shared.otlp import OtlpHttpSpanExporter, SpanEncoder

texts = st.text(max_size=12)
scalars = st.one_of(
    texts,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
values = st.one_of(
    scalars,
    st.lists(texts, max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
    st.lists(st.integers(min_value=0, max_value=2**40), max_size=3).map(tuple),
    st.lists(st.floats(allow_nan=False), max_size=3).map(tuple),
)
attributes = st.dictionaries(st.sampled_from(["a", "b.c", "http.route", "k"]), values, max_size=4)
ids = st.integers(min_value=1, max_value=2**64 - 1)
resources = st.sampled_from(
    [
        Resource({"service.name": "billing"}),
        Resource({"service.name": "billing"}),  # equal, not the same object: one group
        Resource({"service.name": "audit"}, schema_url="https://example.com/schema"),
    ]
)
scopes = st.sampled_from(
    [
        None,
        InstrumentationScope("shared.db"),
        InstrumentationScope("shared.db"),
        InstrumentationScope("faststream", "1.0", "https://example.com/s", {"x": 1}),
    ]
)
statuses = st.sampled_from(
    [
        Status(StatusCode.UNSET),
        Status(StatusCode.OK),
        Status(StatusCode.ERROR),
        Status(StatusCode.ERROR, "broken"),
    ]
)


def _contexts(trace_states: st.SearchStrategy[TraceState | None]) -> st.SearchStrategy[Any]:
    return st.builds(
        SpanContext,
        trace_id=st.integers(min_value=1, max_value=2**128 - 1),
        span_id=ids,
        is_remote=st.booleans(),
        trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
        trace_state=trace_states,
    )


def _spans(*, plain: bool) -> st.SearchStrategy[ReadableSpan]:
    """Spans as the services make them (`plain`: no events, links or trace state, which the
    encoder writes itself) or with everything (which it hands to the SDK's encoder)."""
    if plain:
        contexts, events, links = _contexts(st.none()), st.just(()), st.just(())
    else:
        contexts = _contexts(st.one_of(st.none(), st.just(TraceState([("vendor", "v1")]))))
        events = st.lists(
            st.builds(Event, name=texts, attributes=attributes, timestamp=st.integers(0, 2**63)),
            max_size=2,
        )
        links = st.lists(st.builds(Link, context=contexts, attributes=attributes), max_size=2)
    return st.builds(
        ReadableSpan,
        name=texts,
        context=contexts,
        parent=st.one_of(st.none(), contexts),
        resource=resources,
        attributes=attributes,
        events=events,
        links=links,
        kind=st.sampled_from(list(SpanKind)),
        status=statuses,
        start_time=st.integers(min_value=0, max_value=2**64 - 1),
        end_time=st.integers(min_value=0, max_value=2**64 - 1),
        instrumentation_scope=scopes,
    )


PLAIN_SPANS, FULL_SPANS = _spans(plain=True), _spans(plain=False)


def _decoded(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(
        st.one_of(_spans(plain=True), _spans(plain=True), _spans(plain=False)), max_size=8
    )
)
def test_any_batch_encodes_to_what_the_sdk_encoder_writes(batch: list[ReadableSpan]) -> None:
    """Ids, parent, name, kind, times, attributes of every type, events, links, trace state,
    status, flags (a remote parent), grouping by equal resources and scopes: all as the SDK
    writes them, the first time and from the reused encodings the second."""
    encoder = SpanEncoder()
    assert _decoded(encoder.encode(batch)) == encode_spans(batch)
    assert _decoded(encoder.encode(batch)) == encode_spans(batch)


def test_spans_from_the_sdk_tracer_encode_as_the_sdk_encodes_them() -> None:
    """Live SDK spans: bounded attributes, exceptions as events, and what limits dropped (a
    dropped attribute, event or link) counted."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("parent", attributes={"a": 1, "b": (1, 2), "c": "x"}),
        tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child,
    ):
        child.set_attribute("db.system.name", "postgresql")
        child.record_exception(ValueError("bad"))
    # Limits of nothing at all: no event or link is kept, but their counts are written.
    bare = TracerProvider(span_limits=SpanLimits(max_events=0, max_links=0))
    bare.add_span_processor(SimpleSpanProcessor(exporter))
    link = Link(SpanContext(5, 6, is_remote=True))
    with bare.get_tracer("bare").start_as_current_span("bare", links=[link]) as span:
        span.record_exception(ValueError("bad"))
    finished = exporter.get_finished_spans()
    assert finished[1].dropped_attributes == 1
    assert (finished[2].dropped_events, finished[2].dropped_links) == (1, 1)
    assert not finished[2].events
    assert not finished[2].links
    assert _decoded(SpanEncoder().encode(finished)) == encode_spans(finished)


def test_values_that_compare_equal_but_encode_differently_are_never_confused() -> None:
    """True == 1 == 1.0 and 0.0 == -0.0 in Python, not on the wire."""
    context = SpanContext(1, 2, is_remote=False)
    values = [True, 1, 1.0, "1", 0.0, -0.0, (1,), (True,), (0.0,), (-0.0,)]
    batch = [ReadableSpan(name="s", context=context, attributes={"v": v}) for v in values * 2]
    decoded = _decoded(SpanEncoder().encode(batch)).resource_spans[0].scope_spans[0].spans
    written = [span.attributes[0].value for span in decoded]
    kinds = [value.WhichOneof("value") for value in written]
    assert (
        kinds
        == [
            "bool_value",
            "int_value",
            "double_value",
            "string_value",
            "double_value",
            "double_value",
            "array_value",
            "array_value",
            "array_value",
            "array_value",
        ]
        * 2
    )
    signs = [
        math.copysign(1, value.double_value) for value in written if value.HasField("double_value")
    ]
    assert signs == [1, 1, -1] * 2
    arrays = [value.array_value.values[0] for value in written if value.HasField("array_value")]
    assert [a.WhichOneof("value") for a in arrays] == [
        "int_value",
        "bool_value",
        "double_value",
        "double_value",
    ] * 2
    assert [math.copysign(1, a.double_value) for a in arrays[2:4]] == [1, -1]


def test_reused_encodings_are_bounded_and_stay_right_past_the_bound() -> None:
    """An attribute that never repeats (an offset) must not grow the encoder without end."""
    encoder = SpanEncoder()
    context = SpanContext(1, 2, is_remote=False)
    batch = [
        ReadableSpan(name=f"s{i}", context=context, attributes={"offset": i}) for i in range(9000)
    ]
    assert _decoded(encoder.encode(batch)) == encode_spans(batch)
    assert len(encoder._encoded.attributes) <= 4096
    assert len(encoder._encoded.names) <= 4096


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes], list[int]]]:
    """An OTLP/HTTP collector on loopback keeping the bodies posted; answers as told."""
    bodies: list[bytes] = []
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces", bodies, answers
    server.shutdown()


def test_the_exporter_posts_the_encoded_batch_and_reports_a_refusal(
    collector: tuple[str, list[bytes], list[int]],
) -> None:
    endpoint, bodies, answers = collector
    exporter = OtlpHttpSpanExporter(endpoint=endpoint, timeout=2)
    batch = [
        ReadableSpan(
            name="POST /invoices",
            context=SpanContext(7, 8, is_remote=False),
            attributes={"http.route": "/invoices"},
            kind=SpanKind.SERVER,
            start_time=1,
            end_time=2,
        )
    ]
    assert exporter.export(batch) is SpanExportResult.SUCCESS
    assert [_decoded(body) for body in bodies] == [encode_spans(batch)]
    answers.append(400)  # not retryable: the batch fails at once
    assert exporter.export(batch) is SpanExportResult.FAILURE
    exporter.shutdown()
    assert exporter.export(batch) is SpanExportResult.FAILURE
    assert len(bodies) == 2
