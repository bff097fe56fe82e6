"""One trace follows a flow across HTTP, the outbox row, Kafka headers, the consumer and SMTP."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from billing.main import create_app as create_billing
from billing.settings import BillingSettings
from devstack.stack import Stack
from devstack.testing import MailCatcher, eventually, running
from notifications.main import create_app as create_notifications
from notifications.settings import NotificationsSettings, SmtpSettings
from shared.telemetry import create_telemetry

pytestmark = pytest.mark.integration


async def test_issuing_an_invoice_and_emailing_it_is_one_trace(
    service_env: Callable[[str], dict[str, Any]], infrastructure: Stack, mail: MailCatcher
) -> None:
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
    email = f"traced-{uuid.uuid4().hex[:8]}@example.com"

    async with running(notifications), running(billing) as api:
        opened = (
            await api.post(
                "/accounts",
                json={
                    "name": "Traced",
                    "owner": {"name": "Ada", "email": "ada@traced.example.com"},
                },
            )
        ).json()
        headers = {"Authorization": f"Bearer {opened['api_key']}"}
        customer = (
            await api.post("/customers", headers=headers, json={"name": "Bob", "email": email})
        ).json()
        draft = (
            await api.post(
                "/invoices",
                headers=headers,
                json={
                    "customer_id": customer["id"],
                    "currency": "EUR",
                    "due_date": "2030-01-01",
                    "lines": [{"description": "Work", "quantity": "1", "unit_price": "5"}],
                },
            )
        ).json()
        billing_spans.clear()
        issued = await api.post(f"/invoices/{draft['id']}/issue", headers=headers)
        assert issued.status_code == 200
        await mail.wait_for(lambda ms: any(email in m["to"] for m in ms))
        smtp = await eventually(
            lambda: [s for s in notification_spans.get_finished_spans() if s.name == "smtp send"],
            what="the smtp span",
        )

    request = next(
        s
        for s in billing_spans.get_finished_spans()
        if s.name.startswith("POST /invoices/") and s.parent is None
    )
    trace_id = request.context.trace_id
    consume = [s for s in notification_spans.get_finished_spans() if "invoice.issued" in s.name]
    assert consume, "the consumer's span"
    assert {s.context.trace_id for s in [*consume, *smtp]} == {trace_id}

    def linked() -> bool:
        # The relay's batch span ends once the broker's acknowledgements are settled, which
        # can come after the consumer has already handled the event: wait for it.
        relay = [s for s in billing_spans.get_finished_spans() if s.name == "outbox publish"]
        return trace_id in {link.context.trace_id for span in relay for link in span.links}

    await eventually(linked, what="the relay's batch span linking to the request")
