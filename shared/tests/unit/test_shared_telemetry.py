"""Telemetry: spans leave over OTLP/HTTP when an endpoint is set; logs are JSON with trace ids."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from shared.telemetry import JsonLogFormatter, create_telemetry


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
