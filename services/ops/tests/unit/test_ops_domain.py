"""What the dashboard computes from the services' metrics pages."""

from __future__ import annotations

from ops.domain import (
    Reading,
    ServiceReading,
    audit_status,
    dead_letter_rows,
    lag_by_group,
    lag_rows,
    letter_rows,
    parse_metrics,
    per_second,
    service_rows,
    topic_rows,
    trace_rows,
)


def line(name: str, value: float, **labels: str) -> str:
    """One sample line of a Prometheus text page."""
    inside = ",".join(f'{key}="{label}"' for key, label in labels.items())
    return f"{name}{{{inside}}} {value}"


def billing(issued: float, ok: float, failed: float) -> ServiceReading:
    http = "http_server_request_duration_seconds_count"
    page = "\n".join(
        [
            "# TYPE outbox_relayed_events counter",
            line("outbox_relayed_events_total", issued, topic="p.invoice.issued"),
            "# TYPE http_server_request_duration_seconds histogram",
            line(http, ok, http_request_method="GET", http_response_status_code="200"),
            line(http, failed, http_request_method="POST", http_response_status_code="503"),
            "# TYPE messaging_kafka_consumer_lag gauge",
            line(
                "messaging_kafka_consumer_lag",
                7,
                messaging_consumer_group_name="billing",
                messaging_destination_name="p.payment.settled",
                messaging_destination_partition_id="0",
            ),
            "# TYPE dead_lettered_messages counter",
            line("dead_lettered_messages_total", 2, topic="p.account.terminated", kind="invalid"),
            line("dead_lettered_messages_total", 0, topic="p.invoice.issued", kind="failed"),
            "",
        ]
    )
    return ServiceReading("billing", True, True, {"database": "ok"}, tuple(parse_metrics(page)))


def test_rates_are_counted_between_two_readings_and_a_restart_counts_from_zero() -> None:
    assert per_second({"a": 30.0}, {"a": 10.0}, 2.0) == {"a": 10.0}
    assert per_second({"a": 4.0}, {"a": 100.0}, 2.0) == {"a": 2.0}, "a counter that fell restarted"
    assert per_second({"a": 4.0}, None, 2.0) == {"a": 0.0}, "no rate from one reading"


def test_throughput_per_topic_comes_from_the_relays_counters() -> None:
    before = Reading(10.0, (billing(issued=5, ok=0, failed=0),))
    after = Reading(12.0, (billing(issued=25, ok=0, failed=0),))
    assert topic_rows(after, before) == [
        {"topic": "p.invoice.issued", "published": 25, "per_s": 10.0}
    ]


def test_a_service_shows_its_request_and_server_error_rates() -> None:
    before = Reading(0.0, (billing(issued=0, ok=10, failed=1),))
    after = Reading(4.0, (billing(issued=0, ok=30, failed=9),))
    (row,) = service_rows(after, before)
    assert row["status"] == "ok"
    assert row["requests_per_s"] == 7.0, "(20 + 8) requests in 4 s"
    assert row["server_errors_per_s"] == 2.0, "8 answers of 5xx in 4 s"


def test_an_unreachable_or_unhealthy_service_is_named_as_such() -> None:
    reading = Reading(
        0.0,
        (ServiceReading("audit", False), ServiceReading("retention", True, False, {"sagas": "1"})),
    )
    assert [row["status"] for row in service_rows(reading, None)] == ["unreachable", "down"]


def test_lag_and_dead_letters_are_listed_per_group_partition_and_topic() -> None:
    reading = Reading(0.0, (billing(issued=0, ok=0, failed=0),))
    assert lag_rows(reading) == [
        {"group": "billing", "topic": "p.payment.settled", "partition": "0", "lag": 7}
    ]
    assert lag_by_group(reading) == [{"group": "billing", "partitions": 1, "lag": 7}]
    assert dead_letter_rows(reading) == [
        {"service": "billing", "topic": "p.account.terminated", "kind": "invalid", "count": 2}
    ], "topics with no dead letter are left out"


def test_the_audit_chain_is_broken_when_any_verification_failed() -> None:
    page = "# TYPE quittance_audit_chain_verified gauge\nquittance_audit_chain_verified %s\n"

    def audit(value: int) -> Reading:
        samples = tuple(parse_metrics(page % value))
        return Reading(0.0, (ServiceReading("audit", True, True, {}, samples),))

    assert audit_status(audit(1), [])["chain"] == "intact"
    assert audit_status(audit(0), [])["chain"] == "broken"
    assert audit_status(Reading(0.0, ()), None) == {"chain": "unknown", "alerts": None}


def test_letters_of_every_service_newest_first_and_none_when_none_can_be_read() -> None:
    older = {
        "id": "a.dlq/0/1",
        "topic": "a",
        "kind": "invalid",
        "reason": "bad",
        "dead_lettered_at": "2030-01-01T10:00:00+00:00",
        "account_id": None,
        "redriven": False,
        "content": "never shown",
    }
    newer = {**older, "id": "b.dlq/0/2", "dead_lettered_at": "2030-01-01T11:00:00+00:00"}
    rows = letter_rows({"billing": [older], "audit": [newer], "retention": None})
    assert [(r["service"], r["id"]) for r in rows or []] == [
        ("audit", "b.dlq/0/2"),
        ("billing", "a.dlq/0/1"),
    ]
    assert all("content" not in row for row in rows or []), "only the fields the page shows"
    assert letter_rows({"billing": None, "audit": None}) is None
    assert letter_rows({"billing": []}) == []


def _span(service: str, name: str, trace: str, span: str, parent: str | None, at: str) -> dict:
    return {
        "trace_id": trace,
        "span_id": span,
        "parent_id": parent,
        "service": service,
        "name": name,
        "started_at": f"2030-01-01T10:00:{at}+00:00",
        "duration_ms": 5.0,
        "error": False,
    }


def test_traces_join_the_spans_of_every_service_newest_first_without_relay_batches_or_polls() -> (
    None
):
    request = _span("billing", "POST /invoices", "t1", "a", None, "00")
    consumed = _span("notifications", "invoice.issued process", "t1", "b", "a", "01")
    relay = _span("billing", "outbox publish", "t2", "c", None, "02")
    later = _span("billing", "GET /account", "t3", "d", None, "03")
    polled = _span("billing", "GET /traces", "t4", "e", None, "04")  # the dashboard's own read
    rows = trace_rows({"billing": [request, relay, later, polled], "notifications": [consumed]})
    assert [row["trace_id"] for row in rows or []] == ["t3", "t1"]
    joined = (rows or [])[1]
    assert joined["root"] == "POST /invoices"
    assert joined["services"] == ["billing", "notifications"]
    assert [s["name"] for s in joined["spans"]] == ["POST /invoices", "invoice.issued process"]
    assert joined["duration_ms"] == 1005.0, "from the first start to the last end"
    assert joined["statements"] == []


def test_a_traces_statements_are_counted_per_service_and_its_other_spans_capped() -> None:
    request = _span("billing", "POST /invoices", "t1", "a", None, "00")
    statements = [
        {
            **_span("billing", "SELECT invoice", "t1", f"q{i}", "a", "01"),
            "attributes": {"db.system.name": "postgresql"},
            "error": i == 2,
        }
        for i in range(3)
    ]
    steps = [_span("billing", f"step {i}", "t1", f"s{i}", "a", "02") for i in range(40)]
    (row,) = trace_rows({"billing": [request, *statements, *steps]}) or []
    assert row["statements"] == [
        {"service": "billing", "count": 3, "duration_ms": 15.0, "error": True}
    ]
    assert len(row["spans"]) == 25
    assert "SELECT invoice" not in {s["name"] for s in row["spans"]}
    assert row["more_spans"] == 41 - 25
    assert trace_rows({"billing": None}) is None
