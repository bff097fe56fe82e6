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
