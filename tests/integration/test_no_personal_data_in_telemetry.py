"""USE, PURPOSE: the main flows, driven with marked personal values in every field a person
types, leave none of them in spans, metric samples or log lines (issue 12)."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from billing.main import create_app as create_billing
from billing.settings import BillingSettings
from devstack.stack import Stack
from devstack.testing import MailCatcher, eventually, running
from notifications.main import create_app as create_notifications
from notifications.settings import NotificationsSettings, SmtpSettings
from shared.telemetry import JsonLogFormatter, create_telemetry
from shared.telemetry_privacy import DROPPED

pytestmark = [pytest.mark.integration, pytest.mark.clause("USE", "PURPOSE")]
OPERATOR_TOKEN = "test-billing-operator-token"  # what service_env gives billing


def _not_the_test_client(record: logging.LogRecord) -> bool:
    """The test's own HTTP client logs the URLs it asks for (hostile ones too); the services
    are reached in-process at http://service, so those lines are the test's, not theirs."""
    return not (record.name == "httpx" and "http://service/" in record.getMessage())


class LogLines:
    """Every log record of the process from start() on, as the services write them."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonLogFormatter("test"))
        self.handler.addFilter(_not_the_test_client)
        self.level = logging.getLogger().level

    def start(self) -> None:
        """Listen at the root, at every level; after the services set up their logging, which
        replaces the root's handlers."""
        root = logging.getLogger()
        root.addHandler(self.handler)
        root.setLevel(logging.DEBUG)

    def text(self) -> str:
        """What was written."""
        return self.stream.getvalue()


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    lines = LogLines()
    try:
        yield lines
    finally:
        logging.getLogger().removeHandler(lines.handler)
        logging.getLogger().setLevel(lines.level)


def _span_text(span: ReadableSpan) -> str:
    """Everything a span carries out of the process, as text."""
    parts = [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
    parts += [f"{e.name} {dict(e.attributes or {})!r}" for e in span.events]
    parts += [repr(dict(link.attributes or {})) for link in span.links]
    return "\n".join(parts)


@pytest.mark.clause("USE")
async def test_use_marked_values_reach_no_span_metric_or_log_line(
    service_env: Callable[[str], dict[str, Any]],
    infrastructure: Stack,
    mail: MailCatcher,
    log_lines: LogLines,
) -> None:
    tag = uuid.uuid4().hex[:10]
    marks = {
        "owner name": f"Ownermark{tag}",
        "owner email": f"ownermark{tag}@example.com",
        "company": f"Companymark{tag}",
        "customer name": f"Buyermark{tag}",
        "customer email": f"buyermark{tag}@example.com",
        "address": f"Rue Addressmark{tag}",
        "line": f"Linemark{tag}",
        "hostile": f"Hostilemark{tag}",
    }
    dropped_before = dict(DROPPED.counts)
    billing_spans, notification_spans = InMemorySpanExporter(), InMemorySpanExporter()
    billing = create_billing(
        BillingSettings(**service_env("billing")),
        telemetry=create_telemetry("billing", exporter=billing_spans),
    )
    notifications = create_notifications(
        NotificationsSettings(
            **service_env("notifications"),
            smtp=SmtpSettings(host="127.0.0.1", port=infrastructure.ports.smtp),
        ),
        telemetry=create_telemetry("notifications", exporter=notification_spans),
    )
    log_lines.start()
    async with running(notifications) as notifications_api, running(billing) as api:
        opened = await api.post(
            "/accounts",
            json={
                "name": marks["company"],
                "owner": {"name": marks["owner name"], "email": marks["owner email"]},
            },
        )
        assert opened.status_code == 201, opened.text
        headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = await api.post(
            "/customers",
            headers=headers,
            json={
                "name": marks["customer name"],
                "email": marks["customer email"],
                "address": marks["address"],
            },
        )
        assert customer.status_code == 201, customer.text
        # Hostile input: refused, and the refusal names the field, not the value, anywhere.
        refused = await api.post(
            "/customers", headers=headers, json={"name": "X", "email": marks["hostile"]}
        )
        assert refused.status_code == 422
        lost = await api.get(f"/customers/{marks['hostile']}", headers=headers)
        assert lost.status_code in (404, 422)
        draft = await api.post(
            "/invoices",
            headers=headers,
            json={
                "customer_id": customer.json()["id"],
                "currency": "EUR",
                "due_date": "2030-01-01",
                "lines": [{"description": marks["line"], "quantity": "1", "unit_price": "5"}],
            },
        )
        assert draft.status_code == 201, draft.text
        issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=headers)
        assert issued.status_code == 200, issued.text
        await mail.wait_for(lambda ms: any(marks["customer email"] in m["to"] for m in ms))
        await eventually(
            lambda: any(s.name == "smtp send" for s in notification_spans.get_finished_spans()),
            what="the smtp span",
        )
        renamed = await api.patch(
            f"/customers/{customer.json()['id']}",
            headers=headers,
            json={"name": f"{marks['customer name']}2"},
        )
        assert renamed.status_code == 200, renamed.text
        bearer = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        metrics = {
            "billing": (await api.get("/metrics", headers=bearer)).text,
            "notifications": (await notifications_api.get("/metrics", headers=bearer)).text,
        }

    spans = [*billing_spans.get_finished_spans(), *notification_spans.get_finished_spans()]
    assert len(spans) > 10, "the flows were traced"
    assert all("invoice" in text for text in [metrics["billing"]]), "the metrics were read"
    assert marks["line"] in str(mail.messages()), "the marks did reach where they belong"
    assert '"logger": "shared.outbox"' in log_lines.text(), "the services' logs were read"
    found = {
        where: sorted(name for name, value in marks.items() if value.lower() in text.lower())
        for where, text in {
            "spans": "\n".join(_span_text(span) for span in spans),
            "billing metrics": metrics["billing"],
            "notifications metrics": metrics["notifications"],
            "logs": log_lines.text(),
        }.items()
    }
    assert found == {where: [] for where in found}
    # What the flows export is all on the allow-list: nothing had to be dropped on the way.
    assert DROPPED.counts == dropped_before
