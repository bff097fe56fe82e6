"""What the dashboard shows, computed from readings of the services' telemetry; no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One value of a scraped metric, with its labels."""

    name: str
    labels: Labels
    value: float

    def label(self, name: str) -> str:
        """The value of one label ('' when absent)."""
        return dict(self.labels).get(name, "")


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text page (counters keep their `_total` name)."""
    return [
        Sample(sample.name, tuple(sorted(sample.labels.items())), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


@dataclass(frozen=True)
class ServiceReading:
    """What one service said at one moment: its health report and its metrics."""

    name: str
    reachable: bool
    healthy: bool = False
    checks: Mapping[str, str] = field(default_factory=dict)
    samples: tuple[Sample, ...] = ()

    def total(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels match."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.label(k) == v for k, v in labels.items())
        )

    def by(self, name: str, *labels: str) -> dict[tuple[str, ...], float]:
        """A metric summed per combination of the given labels."""
        sums: dict[tuple[str, ...], float] = {}
        for sample in self.samples:
            if sample.name == name:
                key = tuple(sample.label(label) for label in labels)
                sums[key] = sums.get(key, 0.0) + sample.value
        return sums


@dataclass(frozen=True)
class Reading:
    """Every service's reading, taken at `taken_at` (monotonic seconds)."""

    taken_at: float
    services: tuple[ServiceReading, ...]

    def by(self, name: str, *labels: str) -> dict[tuple[str, ...], float]:
        """A metric summed over the services, per combination of labels."""
        sums: dict[tuple[str, ...], float] = {}
        for service in self.services:
            for key, value in service.by(name, *labels).items():
                sums[key] = sums.get(key, 0.0) + value
        return sums


def per_second(
    current: Mapping[Any, float], previous: Mapping[Any, float] | None, seconds: float
) -> dict[Any, float]:
    """Rates of counters between two readings; a counter that fell (a restart) counts from 0."""
    if previous is None or seconds <= 0:
        return {key: 0.0 for key in current}
    rates = {}
    for key, value in current.items():
        before = previous.get(key, 0.0)
        grown = value - before if value >= before else value
        rates[key] = round(grown / seconds, 3)
    return rates


HTTP_COUNT = "http_server_request_duration_seconds_count"
RELAYED = "outbox_relayed_events_total"
LAG = "messaging_kafka_consumer_lag"
DEAD_LETTERED = "dead_lettered_messages_total"


def service_rows(current: Reading, previous: Reading | None) -> list[dict[str, Any]]:
    """Each service's health, its checks, and its request and server-error rates."""
    seconds = current.taken_at - previous.taken_at if previous else 0.0
    before = {s.name: s for s in previous.services} if previous else {}
    rows = []
    for service in current.services:
        earlier = before.get(service.name)
        requests = per_second(
            {"all": service.total(HTTP_COUNT)},
            {"all": earlier.total(HTTP_COUNT)} if earlier else None,
            seconds,
        )["all"]
        errors_now = _server_errors(service)
        errors = per_second(
            {"all": errors_now},
            {"all": _server_errors(earlier)} if earlier else None,
            seconds,
        )["all"]
        status = "unreachable" if not service.reachable else "ok" if service.healthy else "down"
        rows.append(
            {
                "service": service.name,
                "status": status,
                "checks": dict(service.checks),
                "requests_per_s": requests,
                "server_errors_per_s": errors,
            }
        )
    return rows


def _server_errors(service: ServiceReading) -> float:
    return sum(
        value
        for (status,), value in service.by(HTTP_COUNT, "http_response_status_code").items()
        if status.startswith("5")
    )


def topic_rows(current: Reading, previous: Reading | None) -> list[dict[str, Any]]:
    """Events published per topic (by every service's outbox relay): total and per second."""
    totals = current.by(RELAYED, "topic")
    rates = per_second(
        totals,
        previous.by(RELAYED, "topic") if previous else None,
        current.taken_at - previous.taken_at if previous else 0.0,
    )
    return [
        {"topic": topic, "published": int(total), "per_s": rates[(topic,)]}
        for (topic,), total in sorted(totals.items())
    ]


def lag_rows(current: Reading) -> list[dict[str, Any]]:
    """Partitions a consumer group has yet to catch up on, most behind first."""
    lags = current.by(
        LAG,
        "messaging_consumer_group_name",
        "messaging_destination_name",
        "messaging_destination_partition_id",
    )
    behind = [
        {"group": group, "topic": topic, "partition": partition, "lag": int(lag)}
        for (group, topic, partition), lag in sorted(lags.items())
        if lag > 0
    ]
    return sorted(behind, key=lambda row: -row["lag"])


def lag_by_group(current: Reading) -> list[dict[str, Any]]:
    """Each consumer group: how many partitions it reads and its total lag."""
    partitions = current.by(
        LAG,
        "messaging_consumer_group_name",
        "messaging_destination_name",
        "messaging_destination_partition_id",
    )
    groups: dict[str, dict[str, Any]] = {}
    for (group, _, _), lag in partitions.items():
        row = groups.setdefault(group, {"group": group, "partitions": 0, "lag": 0})
        row["partitions"] += 1
        row["lag"] += int(lag)
    return [groups[group] for group in sorted(groups)]


def outbox_rows(current: Reading) -> list[dict[str, Any]]:
    """Each service's outbox: events waiting, the oldest one's age, and events parked."""
    return [
        {
            "service": service.name,
            "backlog": int(service.total("outbox_backlog_events")),
            "oldest_age_s": round(service.total("outbox_oldest_unpublished_age_seconds"), 1),
            "parked": int(service.total("outbox_parked_events_total")),
        }
        for service in current.services
        if service.reachable
    ]


def dead_letter_rows(current: Reading) -> list[dict[str, Any]]:
    """Messages each service dead-lettered, per topic and kind of failure."""
    rows = []
    for service in current.services:
        for (topic, kind), count in sorted(service.by(DEAD_LETTERED, "topic", "kind").items()):
            if count:
                rows.append(
                    {"service": service.name, "topic": topic, "kind": kind, "count": int(count)}
                )
    return rows


RELAY_SPAN = "outbox publish"
LETTER_FIELDS = ("id", "topic", "kind", "reason", "dead_lettered_at", "account_id", "redriven")


def letter_rows(listed: dict[str, list[dict[str, Any]] | None]) -> list[dict[str, Any]] | None:
    """Every service's dead letters, newest first, each with its service; None when no
    service's letters could be read."""
    if listed and all(letters is None for letters in listed.values()):
        return None
    rows = [
        {"service": service, **{field: letter.get(field) for field in LETTER_FIELDS}}
        for service, letters in listed.items()
        for letter in letters or []
        if isinstance(letter, dict)
    ]
    return sorted(rows, key=lambda row: str(row["dead_lettered_at"]), reverse=True)


def _ends_at(span: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(span["started_at"]) + timedelta(
        milliseconds=float(span["duration_ms"])
    )


SPANS_SHOWN = 25  # of a trace, besides its statements
# What the dashboard itself asks the services every few seconds.
DASHBOARD_READS = frozenset(
    {"GET /traces", "GET /sagas", "GET /alerts", "GET /dead-letters", "GET /staff/session"}
)


def _is_statement(span: dict[str, Any]) -> bool:
    """A PostgreSQL statement's span (the database semantic conventions')."""
    attributes = span.get("attributes")
    return isinstance(attributes, dict) and attributes.get("db.system.name") == "postgresql"


def trace_rows(
    listed: dict[str, list[dict[str, Any]] | None], limit: int = 15
) -> list[dict[str, Any]] | None:
    """The newest traces across the services, each with its spans in the order they started;
    a relay's batch alone is not shown (it links to the requests, it does not carry them).
    None when no service keeps its spans."""
    if listed and all(spans is None for spans in listed.values()):
        return None
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for spans in listed.values():
        for span in spans or []:
            if isinstance(span, dict) and "trace_id" in span and "started_at" in span:
                by_trace.setdefault(str(span["trace_id"]), []).append(span)
    rows = []
    for trace_id, spans in by_trace.items():
        if all(span.get("name") == RELAY_SPAN for span in spans):
            continue
        spans.sort(key=lambda span: str(span["started_at"]))
        statements = [s for s in spans if _is_statement(s)]
        steps = [s for s in spans if not _is_statement(s)]
        ids = {span.get("span_id") for span in spans}
        root = next((s for s in spans if s.get("parent_id") not in ids), spans[0])
        if root.get("name") in DASHBOARD_READS:
            continue  # the dashboard reading the services: it would crowd out their work
        started = datetime.fromisoformat(spans[0]["started_at"])
        rows.append(
            {
                "trace_id": trace_id,
                "started_at": spans[0]["started_at"],
                "root": root.get("name"),
                "services": list(dict.fromkeys(str(s.get("service")) for s in spans)),
                "duration_ms": round(
                    (max(_ends_at(s) for s in spans) - started).total_seconds() * 1000, 1
                ),
                "error": any(s.get("error") for s in spans),
                "spans": [
                    {
                        "service": s.get("service"),
                        "name": s.get("name"),
                        "duration_ms": s.get("duration_ms"),
                        "error": bool(s.get("error")),
                    }
                    for s in steps[:SPANS_SHOWN]
                ],
                "more_spans": max(len(steps) - SPANS_SHOWN, 0),
                # A flow runs dozens of statements: each service's are counted, not listed.
                "statements": [
                    {
                        "service": service,
                        "count": len(mine),
                        "duration_ms": round(sum(float(s.get("duration_ms", 0)) for s in mine), 1),
                        "error": any(s.get("error") for s in mine),
                    }
                    for service in dict.fromkeys(str(s.get("service")) for s in statements)
                    if (mine := [s for s in statements if str(s.get("service")) == service])
                ],
            }
        )
    rows.sort(key=lambda row: str(row["started_at"]), reverse=True)
    return rows[:limit]


def email_counts(current: Reading) -> dict[str, int]:
    """Emails by outcome (sent, deferred, bounced, suppressed)."""
    return {
        outcome: int(count)
        for (outcome,), count in sorted(
            current.by("quittance_notifications_emails_total", "outcome").items()
        )
    }


def audit_status(current: Reading, alerts: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Whether the last scheduled verification found the trail intact, and the alerts."""
    verified = [
        sample.value
        for service in current.services
        for sample in service.samples
        if sample.name == "quittance_audit_chain_verified"
    ]
    state = "unknown" if not verified else "intact" if min(verified) >= 1 else "broken"
    return {"chain": state, "alerts": alerts}


def history_point(
    current: Reading, topics: Iterable[Mapping[str, Any]], groups: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """One point of the charts: throughput per topic, total lag and total outbox backlog."""
    return {
        "per_s": {row["topic"]: row["per_s"] for row in topics},
        "lag": sum(int(row["lag"]) for row in groups),
        "backlog": sum(int(s.total("outbox_backlog_events")) for s in current.services),
    }
