"""OTLP/HTTP span export with an encoder that costs a third of the SDK's.

OpenTelemetry's encoder builds a protobuf object per span, attribute and value (~16 µs a span
on this project's 2-core host, the largest part of what tracing cost the issuing path). This
one writes the same bytes directly: a span's ids and times are packed, and an attribute or a
name, which repeat from span to span (a route, a table, a status), is encoded once and reused.
What it does not write itself (events, links, trace state, resources, scopes) it hands to the
SDK's encoder, so a collector reads exactly what the SDK's exporter would have sent; a test
compares the two on generated spans.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_attributes,
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import _encode_span
from opentelemetry.exporter.otlp.proto.http._common import (
    RequestPayloadTooLargeError,
    _is_request_too_large,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanKind

log = logging.getLogger(__name__)

# Field keys (number << 3 | wire type) of opentelemetry/proto/trace/v1/trace.proto's Span.
_TRACE_ID, _SPAN_ID, _PARENT_SPAN_ID = b"\x0a\x10", b"\x12\x08", b"\x22\x08"
_NAME, _ATTRIBUTE, _STATUS, _DROPPED_ATTRIBUTES = b"\x2a", b"\x4a", b"\x7a", b"\x50"
_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
_TIMES = struct.Struct("<BQBQ")  # start (7) and end (8) as fixed64
_FLAGS = struct.Struct("<HI")  # flags (16) as fixed32, after its two-byte key
_FLAGS_KEY = 0x0185
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags masks
# ExportTraceServiceRequest.resource_spans (1); ResourceSpans.resource (1), .scope_spans (2),
# .schema_url (3); ScopeSpans.scope (1), .spans (2), .schema_url (3).
_RESOURCE_SPANS = _RESOURCE = _SCOPE = b"\x0a"
_SCOPE_SPANS = _SPANS = b"\x12"
_SCHEMA_URL = b"\x1a"
_UNSEEN = object()
_REUSED = (str, int, bool)
_CACHE_LIMIT = 4096  # names and attributes kept encoded; ids and offsets would grow it forever


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(key: bytes, data: bytes) -> bytes:
    """A length-delimited field."""
    return key + _varint(len(data)) + data


class _Encoded:
    """Values encoded once and reused, emptied when full (a cache, not a store)."""

    def __init__(self) -> None:
        self.names: dict[str, bytes] = {}
        self.attributes: dict[tuple[str, type, str | int], bytes] = {}

    def name(self, name: str) -> bytes:
        encoded = self.names.get(name)
        if encoded is None:
            encoded = _field(_NAME, name.encode())
            if len(self.names) >= _CACHE_LIMIT:
                self.names.clear()
            self.names[name] = encoded
        return encoded

    def attribute(self, key: str, value: Any) -> bytes:
        # Only strings and integers are reused (routes, tables, statuses, ids): 0.0 == -0.0
        # and a sequence can hold either, but they encode differently. The type is part of
        # the key: True == 1, but they encode differently too.
        if type(value) not in _REUSED:
            return _attribute(key, value)
        cache_key = (key, type(value), value)
        encoded = self.attributes.get(cache_key)
        if encoded is None:
            encoded = _attribute(key, value)
            if len(self.attributes) >= _CACHE_LIMIT:
                self.attributes.clear()
            self.attributes[cache_key] = encoded
        return encoded


def _attribute(key: str, value: Any) -> bytes:
    """One KeyValue as the SDK encodes it (nothing when the SDK would drop the value)."""
    return b"".join(
        _field(_ATTRIBUTE, pair.SerializeToString())
        for pair in _encode_attributes({key: value}) or ()
    )


def _status(span: ReadableSpan) -> bytes:
    code, description = span.status.status_code.value, span.status.description
    body = _field(b"\x12", description.encode()) if description else b""
    if code:
        body += b"\x18" + _varint(code)
    return _field(_STATUS, body)


def _span(span: ReadableSpan, encoded: _Encoded) -> bytes:
    """A span's Span message, as the SDK's encoder would write it."""
    context, parent = span.context, span.parent
    if (
        context is None
        or context.trace_state
        or span.events
        or span.links
        or span.dropped_events
        or span.dropped_links
    ):
        return bytes(_encode_span(span).SerializeToString())
    parts = [_TRACE_ID, context.trace_id.to_bytes(16, "big"), _SPAN_ID]
    parts.append(context.span_id.to_bytes(8, "big"))
    if parent is not None:
        parts += (_PARENT_SPAN_ID, parent.span_id.to_bytes(8, "big"))
    parts.append(encoded.name(span.name))
    parts.append(_KIND[span.kind])
    parts.append(_TIMES.pack(0x39, span.start_time or 0, 0x41, span.end_time or 0))
    parts.extend(encoded.attribute(key, value) for key, value in (span.attributes or {}).items())
    if span.dropped_attributes:
        parts.append(_DROPPED_ATTRIBUTES + _varint(span.dropped_attributes))
    parts.append(_status(span))
    remote = parent is not None and parent.is_remote
    parts.append(_FLAGS.pack(_FLAGS_KEY, _HAS_IS_REMOTE | (_IS_REMOTE if remote else 0)))
    return b"".join(parts)


class _FirstEqual:
    """Maps an object to the first equal one seen (the SDK groups spans by equal resources and
    scopes), comparing by identity first: a service's spans share one of each."""

    def __init__(self) -> None:
        self._by_id: dict[int, Any] = {}
        self._seen: list[Any] = []

    def __call__(self, obj: Any) -> Any:
        found = self._by_id.get(id(obj), _UNSEEN)
        if found is _UNSEEN:
            found = next((seen for seen in self._seen if seen == obj), obj)
            if found is obj:
                self._seen.append(obj)
            self._by_id[id(obj)] = found
        return found


class SpanEncoder:
    """Encodes spans into an OTLP ExportTraceServiceRequest's bytes."""

    def __init__(self) -> None:
        self._encoded = _Encoded()

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The request carrying `spans`, grouped by resource and scope as the SDK groups them."""
        resources, scopes = _FirstEqual(), _FirstEqual()
        grouped: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
        for span in spans:
            resource, scope = resources(span.resource), scopes(span.instrumentation_scope)
            by_scope = grouped.setdefault(id(resource), (resource, {}))[1]
            by_scope.setdefault(id(scope), (scope, []))[1].append(_span(span, self._encoded))
        return b"".join(
            _field(_RESOURCE_SPANS, _resource_spans(resource, by_scope.values()))
            for resource, by_scope in grouped.values()
        )


def _resource_spans(resource: Any, scopes: Any) -> bytes:
    parts = [_field(_RESOURCE, _encode_resource(resource).SerializeToString())]
    for scope, spans in scopes:
        body = [_field(_SCOPE, _encode_instrumentation_scope(scope).SerializeToString())]
        body += [_field(_SPANS, span) for span in spans]
        if scope is not None and scope.schema_url:
            body.append(_field(_SCHEMA_URL, scope.schema_url.encode()))
        parts.append(_field(_SCOPE_SPANS, b"".join(body)))
    if resource.schema_url:
        parts.append(_field(_SCHEMA_URL, resource.schema_url.encode()))
    return b"".join(parts)


class OtlpHttpSpanExporter(OTLPSpanExporter):
    """OpenTelemetry's OTLP/HTTP exporter (its transport, retries, limits and own metrics) with
    the leaner encoder; its `export` is the SDK's with the encoder swapped, which ties it to the
    SDK's minor release (pinned in shared's pyproject, and checked by the tests)."""

    def __init__(self, endpoint: str, **options: Any) -> None:
        super().__init__(endpoint=endpoint, **options)
        self._encoder = SpanEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Encode the batch and post it as the SDK's exporter does."""
        if self._shutdown:
            log.warning("the span exporter is shut down: batch ignored")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self._encoder.encode(spans)
            except Exception as error:  # a span the encoder cannot write must not stop export
                log.error("could not encode a span batch: %s", type(error).__name__)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(data, self._max_request_size):
                log.warning("dropped a span batch of %d bytes: over the size limit", len(data))
                result.error = RequestPayloadTooLargeError(
                    f"span batch of {len(data)} bytes over {self._max_request_size}"
                )
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                if sent.status_code is not None:
                    result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
