"""Telemetry: spans leave over OTLP/HTTP when an endpoint is set; logs are JSON with trace ids."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, Counter, generate_latest

from shared.http import harden_api
from shared.telemetry import JsonLogFormatter, RequestTelemetryMiddleware, create_telemetry
from shared.telemetry_privacy import LOG_FIELDS, AllowedMetrics


@pytest.fixture
def collector() -> Iterator[tuple[str, list[str]]]:
    """A stand-in OTLP/HTTP collector on loopback that records the paths posted to it."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(
    collector: tuple[str, list[str]],
) -> None:
    endpoint, received = collector
    telemetry = create_telemetry("unit", otlp_endpoint=endpoint)
    with telemetry.tracer("test").start_as_current_span("work"):
        pass
    telemetry.shutdown()  # flushes the batch
    assert received == ["/v1/traces"]


def test_log_lines_are_json_with_the_current_trace_id() -> None:
    telemetry = create_telemetry("unit")
    formatter = JsonLogFormatter("unit")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    with telemetry.tracer("test").start_as_current_span("work") as span:
        line = json.loads(formatter.format(record))
    assert line["message"] == "hello world"
    assert line["service"] == "unit"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_the_access_log_never_writes_paths_or_query_strings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """uvicorn logs a request whenever its access logger has a handler up its tree; paths and
    query strings can hold personal data, so after configure_logging it has none."""
    from shared.telemetry import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("test")
        access = logging.getLogger("uvicorn.access")
        assert not access.hasHandlers()
        access.info('%s - "%s %s HTTP/1.1" %d', "127.0.0.1", "GET", "/x?email=ada@x.io", 200)
        assert "ada@x.io" not in capsys.readouterr().err
        logging.getLogger("uvicorn.error").warning("still logged")
        assert "still logged" in capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_each_request_gets_one_server_span_and_one_duration_sample_by_route_template() -> (
    None
):
    """Only the route template names a request in telemetry, never the path or query string."""
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry("unit", exporter=exporter)
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("ada@example.com")

    harden_api(app, max_body_bytes=1024)
    app.add_middleware(
        RequestTelemetryMiddleware, telemetry=telemetry, excluded_paths=frozenset({"/healthz"})
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as client:
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await client.get(
            "/things/ada@example.com?email=ada@example.com", headers={"traceparent": parent}
        )
        await client.get("/nowhere/ada@example.com")
        await client.get("/broken")
        await client.get("/healthz")
        await client.request("BREW", "/things/1")

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "GET /things/{thing_id}",
        "GET",
        "GET /broken",
        "HTTP /things/{thing_id}",
    ]
    first = spans[0]
    assert first.kind is SpanKind.SERVER
    assert format(first.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert first.attributes is not None
    assert first.attributes["http.route"] == "/things/{thing_id}"
    assert first.attributes["http.response.status_code"] == 200
    assert spans[2].status.status_code is StatusCode.ERROR
    assert not spans[2].events, "no exception event: its message may hold personal data"
    assert "ada@example.com" not in repr([(s.name, s.attributes) for s in spans])
    samples = {
        tuple(sample.labels.values()): sample.value
        for metric in telemetry.registry.collect()
        if metric.name == "http_server_request_duration_seconds"
        for sample in metric.samples
        if sample.name.endswith("_count")
    }
    assert samples == {
        ("GET", "/things/{thing_id}", "200"): 1,
        ("GET", "", "404"): 1,
        ("GET", "/broken", "500"): 1,
        ("_OTHER", "/things/{thing_id}", "405"): 1,
    }


def test_what_a_services_meters_measure_is_on_its_prometheus_page() -> None:
    """Code measures with the OpenTelemetry API; the service's /metrics shows it: counters,
    counts that can fall, gauges and histograms, with their attributes as labels. Another
    service's telemetry in the same process sees none of it."""
    telemetry = create_telemetry("unit")
    meter = telemetry.meter("quittance.unit")
    sent = meter.create_counter("quittance.unit.emails.sent", unit="{email}")
    sent.add(2, {"kind": "invoice"})
    sent.add(1, {"kind": "reminder"})
    meter.create_up_down_counter("quittance.unit.sagas.active").add(3)
    meter.create_gauge("quittance.unit.chain.verified").set(1)
    took = meter.create_histogram("quittance.unit.purge.duration", unit="s")
    for seconds in (0.5, 3.0, 8.0):
        took.record(seconds)
    page = generate_latest(telemetry.registry).decode()
    value = telemetry.registry.get_sample_value
    assert value("quittance_unit_emails_sent_total", {"kind": "invoice"}) == 2
    assert value("quittance_unit_emails_sent_total", {"kind": "reminder"}) == 1
    assert "# TYPE quittance_unit_emails_sent_total counter" in page
    assert value("quittance_unit_sagas_active") == 3
    assert "# TYPE quittance_unit_sagas_active gauge" in page
    assert value("quittance_unit_chain_verified") == 1
    assert value("quittance_unit_purge_duration_count") == 3
    assert value("quittance_unit_purge_duration_sum") == 11.5
    assert value("quittance_unit_purge_duration_bucket", {"le": "5.0"}) == 2
    assert value("quittance_unit_purge_duration_bucket", {"le": "+Inf"}) == 3
    other = create_telemetry("other")
    assert other.registry.get_sample_value("quittance_unit_chain_verified") is None


MARK = "mark-7f3a@example.com"


@pytest.mark.clause("USE")
def test_use_span_attributes_events_and_status_pass_the_allow_list() -> None:
    """USE: only reviewed convention keys and our own non-personal ones leave the process;
    an exception's message and a status description never do."""
    exported = InMemorySpanExporter()
    tracer = create_telemetry("allow-list-test", exporter=exported).tracer(__name__)
    with tracer.start_as_current_span("work") as span:
        span.set_attribute("http.route", "/customers/{customer_id}")
        span.set_attribute("quittance.saga_id", "saga-1")
        span.set_attribute("email", MARK)
        span.set_attribute("quittance.customer.email", MARK)
        span.set_attribute("enduser.id", MARK)
        span.record_exception(ValueError(f"bad value {MARK}"))
        span.set_status(StatusCode.ERROR, f"failed for {MARK}")
    (finished,) = exported.get_finished_spans()
    assert dict(finished.attributes or {}) == {
        "http.route": "/customers/{customer_id}",
        "quittance.saga_id": "saga-1",
    }
    (event,) = finished.events
    assert dict(event.attributes or {}) == {
        "exception.type": "ValueError",
        "exception.escaped": "False",
    }
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description is None


@pytest.mark.clause("USE")
def test_use_metric_samples_with_a_label_off_the_allow_list_are_not_exposed() -> None:
    """USE: a metric labelled by a personal field is dropped from /metrics, and counted."""
    registry = CollectorRegistry()
    Counter("quittance_test_sent", "test", ["topic"], registry=registry).labels("t").inc()
    Counter("quittance_test_by_email", "test", ["email"], registry=registry).labels(MARK).inc()
    exposed = generate_latest(AllowedMetrics(registry)).decode()
    assert 'quittance_test_sent_total{topic="t"} 1.0' in exposed
    assert MARK not in exposed
    assert 'quittance_telemetry_dropped_total{what="metric label"}' in exposed


@pytest.mark.clause("USE")
def test_use_log_lines_carry_only_their_fixed_fields() -> None:
    """USE: values handed to a log call as extra fields are never written."""
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "customer %s updated", ("c-1",), None
    )
    record.email = MARK
    line = json.loads(JsonLogFormatter("svc").format(record))
    assert set(line) <= set(LOG_FIELDS)
    assert line["message"] == "customer c-1 updated"
    assert MARK not in json.dumps(line)


def test_with_tracing_off_no_span_is_recorded_or_exported() -> None:
    """The switch make bench measures telemetry's cost with: the sampler drops every span."""
    exported = InMemorySpanExporter()
    tracer = create_telemetry("off-test", exporter=exported, tracing=False).tracer(__name__)
    with tracer.start_as_current_span("work") as span:
        assert not span.is_recording()
    assert exported.get_finished_spans() == ()


def test_without_a_collector_the_latest_spans_are_kept_in_process_through_the_allow_list() -> None:
    """What the ops dashboard shows as recent traces: bounded, and never a personal value."""
    telemetry = create_telemetry("kept-test")
    assert telemetry.recent is not None
    tracer = telemetry.tracer(__name__)
    with tracer.start_as_current_span("parent") as parent:
        parent.set_attribute("email", MARK)
        with tracer.start_as_current_span("child", kind=SpanKind.CONSUMER):
            pass
    telemetry.tracer_provider.force_flush()
    child, parent_row = telemetry.recent.recent(10)
    assert (child["name"], parent_row["name"]) == ("child", "parent")
    assert child["trace_id"] == parent_row["trace_id"]
    assert child["parent_id"] == parent_row["span_id"]
    assert child["kind"] == "consumer"
    assert child["service"] == "kept-test"
    assert parent_row["attributes"] == {}
    assert MARK not in json.dumps(telemetry.recent.recent(10))
    assert telemetry.recent.recent(1) == [parent_row]
    assert create_telemetry("collector-test", otlp_endpoint="http://127.0.0.1:9").recent is None
    assert create_telemetry("off-test", tracing=False).recent is None


@pytest.mark.clause("USE")
def test_a_finished_span_is_recorded_under_the_current_span_through_the_allow_list() -> None:
    """What a statement's span is: the current span's child, dated as given, with only the
    allowed attributes; nothing outside a span or under one that is not sampled."""
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry("unit", exporter=exporter)
    spans = telemetry.recorder("test.scope")
    with telemetry.tracer("test").start_as_current_span("operation") as operation:
        spans.child(
            "SELECT invoice",
            kind=SpanKind.CLIENT,
            start_time=10,
            end_time=20,
            attributes={"db.operation.name": "SELECT", "email": MARK},
            error=True,
        )
    spans.child("SELECT outside", kind=SpanKind.CLIENT, start_time=1, end_time=2, attributes={})
    child, parent = exporter.get_finished_spans()
    assert child.parent is not None
    assert child.parent.span_id == operation.get_span_context().span_id
    assert child.context is not None
    assert parent.context is not None
    assert child.context.trace_id == parent.context.trace_id
    assert child.context.span_id not in {0, parent.context.span_id}
    assert (child.name, child.kind, child.start_time, child.end_time) == (
        "SELECT invoice",
        SpanKind.CLIENT,
        10,
        20,
    )
    assert child.status.status_code is StatusCode.ERROR
    assert dict(child.attributes or {}) == {"db.operation.name": "SELECT"}
    assert child.resource.attributes["service.name"] == "unit"
    assert child.instrumentation_scope is not None
    assert child.instrumentation_scope.name == "test.scope"

    off_exporter = InMemorySpanExporter()
    off = create_telemetry("off-test", exporter=off_exporter, tracing=False)
    with off.tracer("test").start_as_current_span("operation"):
        off.recorder("test").child(
            "SELECT x", kind=SpanKind.CLIENT, start_time=1, end_time=2, attributes={}
        )
    assert off_exporter.get_finished_spans() == ()


def test_a_current_span_parents_what_runs_inside_it_and_is_recorded_as_the_block_left_it() -> None:
    """What a request's span is: current inside the request, named and described by what the
    request found out, continuing a caller's sampled trace and dropping an unsampled one."""
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry("unit", exporter=exporter)
    spans = telemetry.recorder("test")
    with spans.current("GET", kind=SpanKind.SERVER) as span:
        current = trace.get_current_span().get_span_context()
        with telemetry.tracer("test").start_as_current_span("inside"):
            pass
        span.name = "GET /x"
        span.attributes["http.route"] = "/x"
    assert not trace.get_current_span().get_span_context().is_valid, "detached after"
    inside, outer = exporter.get_finished_spans()
    assert (outer.name, outer.kind, outer.parent) == ("GET /x", SpanKind.SERVER, None)
    assert outer.context == current
    assert current.trace_flags.sampled
    assert inside.parent is not None
    assert inside.parent.span_id == current.span_id
    assert outer.start_time is not None
    assert inside.start_time is not None
    assert outer.end_time is not None
    assert inside.end_time is not None
    assert outer.start_time <= inside.start_time <= inside.end_time <= outer.end_time
    assert outer.status.status_code is StatusCode.UNSET

    trace_id, caller = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    sampled = propagate.extract({"traceparent": f"00-{trace_id}-{caller}-01"})

    def failing_request() -> None:
        with spans.current("POST", kind=SpanKind.SERVER, parent=sampled) as span:
            span.error = True
            raise RuntimeError("failed")

    with pytest.raises(RuntimeError):
        failing_request()
    continued = exporter.get_finished_spans()[-1]
    assert continued.context is not None
    assert continued.parent is not None
    assert format(continued.context.trace_id, "032x") == trace_id
    assert format(continued.parent.span_id, "016x") == caller
    assert continued.parent.is_remote
    assert continued.status.status_code is StatusCode.ERROR

    unsampled = propagate.extract({"traceparent": f"00-{trace_id}-{caller}-00"})
    with spans.current("POST", kind=SpanKind.SERVER, parent=unsampled):
        carried = trace.get_current_span().get_span_context()
        spans.child("SELECT x", kind=SpanKind.CLIENT, start_time=1, end_time=2, attributes={})
    assert carried.is_valid
    assert not carried.trace_flags.sampled
    assert format(carried.trace_id, "032x") == trace_id
    assert len(exporter.get_finished_spans()) == 3, "nothing of an unsampled trace"

    off_exporter = InMemorySpanExporter()
    off = create_telemetry("off-test", exporter=off_exporter, tracing=False).recorder("test")
    with off.current("GET", kind=SpanKind.SERVER):
        assert trace.get_current_span().get_span_context().is_valid
    assert off_exporter.get_finished_spans() == ()
