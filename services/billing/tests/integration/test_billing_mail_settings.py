"""The account's mail settings (language, logo, reminder schedule, quiet hours) as billing
keeps and announces them, and the email delivery log it shows (USE, LINKS)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from billing.settings import BillingSettings
from devstack.testing import eventually, produce, read_events, sealed
from shared.contracts import EmailStatusChanged, new_envelope

pytestmark = pytest.mark.integration

SCHEDULE = {
    "days_before_due": [3],
    "on_due": True,
    "days_after_due": [7, 14],
    "repeat": {"every_days": 7, "times": 3},
}


async def _settings_events(
    billing_settings: BillingSettings, account_id: str, count: int
) -> list[dict[str, Any]]:
    return await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("account.mail_settings_changed"),
        count=count,
        key=account_id,
        keystore=billing_settings.keystore,
    )


@pytest.mark.clause("USE")
async def test_use_opening_and_changing_the_mail_settings_tell_notifications(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    account_id = account["account"]["id"]
    changed = await api.patch(
        "/account",
        headers=account["headers"],
        json={
            "locale": "fr-FR",
            "time_zone": "Europe/Paris",
            "logo_url": "https://cdn.acme.example/logo.png",
            "reminders": SCHEDULE,
            "quiet_hours": {"start": "21:00", "end": "08:00"},
        },
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["reminders"] == SCHEDULE
    assert body["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert body["logo_url"] == "https://cdn.acme.example/logo.png"
    # An unrelated change (payment terms) tells notifications nothing.
    unrelated = await api.patch(
        "/account", headers=account["headers"], json={"payment_terms_days": 45}
    )
    assert unrelated.status_code == 200, unrelated.text
    stopped = await api.patch("/account", headers=account["headers"], json={"reminders": None})
    assert stopped.json()["reminders"] is None

    events = await _settings_events(billing_settings, account_id, 3)
    assert len(events) == 3, "opened, mail settings changed, reminders stopped: no more"
    opened, configured, off = (event["data"] for event in events)
    assert opened["presentation"] == {"locale": "en", "time_zone": "UTC", "logo_url": None}
    assert opened["reminders"] is None
    assert configured["account_name"] == account["account"]["name"]
    assert configured["presentation"] == {
        "locale": "fr-FR",
        "time_zone": "Europe/Paris",
        "logo_url": "https://cdn.acme.example/logo.png",
    }
    assert configured["reminders"] == {  # in the contract's terms
        "days_before_due": [3],
        "on_due": True,
        "days_after_due": [7, 14],
        "repeat_every_days": 7,
        "repeat_limit": 3,
    }
    assert configured["quiet_hours"] == {"start": "21:00:00", "end": "08:00:00"}
    assert off["reminders"] is None
    assert off["quiet_hours"] == configured["quiet_hours"]


@pytest.mark.clause("USE")
async def test_use_an_issued_invoice_carries_how_the_accounts_mail_reads(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    """The snapshot rides with the event: the email reads as the account said when it issued,
    whatever order notifications sees the two events in."""
    headers = account["headers"]
    await api.patch("/account", headers=headers, json={"locale": "de-DE"})
    issued = await api.post(
        "/invoices",
        headers=headers,
        json={
            "customer_id": customer["id"],
            "due_date": "2030-01-31",
            "lines": [{"description": "Work", "quantity": "1", "unit_price": "10"}],
            "issue": True,
        },
    )
    assert issued.status_code == 201, issued.text
    (event,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("invoice.issued"),
        count=1,
        key=account["account"]["id"],
    )
    assert event["data"]["presentation"] == {
        "locale": "de-DE",
        "time_zone": "UTC",
        "logo_url": None,
    }


@pytest.mark.clause("USE")
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reminders": {"days_after_due": [0]}}, "reminders.days_after_due.0"),
        ({"reminders": {"days_before_due": [91]}}, "reminders.days_before_due.0"),
        ({"reminders": {"days_after_due": [7, 7]}}, "reminders.days_after_due"),
        ({"reminders": {"repeat": {"every_days": 7}}}, "reminders.repeat.times"),
        ({"reminders": {"repeat": {"every_days": 0, "times": 2}}}, "reminders.repeat.every_days"),
        ({"reminders": {"repeat_limit": 2}}, "reminders.repeat_limit"),
        ({"reminders": {"on_due": "yes"}}, "reminders.on_due"),
        ({"reminders": {"on_due": True, "marketing": True}}, "reminders.marketing"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"logo_url": "http://cdn.acme.example/logo.png"}, "logo_url"),
        ({"logo_url": "javascript:alert(1)"}, "logo_url"),
        ({"logo_url": 'https://cdn.example/x" onerror="alert(1)'}, "logo_url"),
        ({"locale": "ja-JP"}, "locale"),
    ],
)
async def test_use_a_bad_mail_setting_is_refused_naming_the_field_and_changes_nothing(
    api: httpx.AsyncClient, account: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    before = (await api.get("/account", headers=account["headers"])).json()
    refused = await api.patch("/account", headers=account["headers"], json=change)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in refused.json()["errors"]]
    assert (await api.get("/account", headers=account["headers"])).json() == before


async def _status(
    billing_settings: BillingSettings, account_id: str, email_id: uuid.UUID, **fields: Any
) -> None:
    change = EmailStatusChanged(
        account_id=uuid.UUID(account_id),
        email_id=email_id,
        message_id=f"<{email_id}@quittance.example>",
        kind=fields.pop("kind", "invoice"),
        recipient=fields.pop("recipient", "bob@buyer.example.com"),
        **fields,
    )
    envelope = new_envelope(change, source="notifications")
    await produce(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic(envelope.type),
        await sealed(envelope, billing_settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )


@pytest.mark.clause("USE")
async def test_use_the_delivery_log_shows_each_emails_latest_status_to_its_account_only(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    account_id = account["account"]["id"]
    invoice_id = uuid.uuid4()
    email_id = uuid.uuid4()
    now = datetime.now(UTC)
    await _status(
        billing_settings,
        account_id,
        email_id,
        status="deferred",
        attempts=1,
        reason="SMTP 451",
        document_id=invoice_id,
        changed_at=now,
    )
    await _status(
        billing_settings,
        account_id,
        email_id,
        status="sent",
        attempts=2,
        document_id=invoice_id,
        changed_at=now + timedelta(minutes=2),
    )
    # Told late (another partition's order): an older status never replaces a newer one.
    await _status(
        billing_settings,
        account_id,
        email_id,
        status="deferred",
        attempts=1,
        reason="SMTP 451",
        document_id=invoice_id,
        changed_at=now - timedelta(minutes=1),
    )
    bounced_id = uuid.uuid4()
    await _status(
        billing_settings,
        account_id,
        bounced_id,
        kind="payment-reminder",
        recipient="bounce@buyer.example.com",
        status="bounced",
        attempts=1,
        reason="SMTP 550",
        changed_at=now + timedelta(minutes=3),
    )

    async def logged() -> bool:
        listed = (await api.get("/email-deliveries", headers=account["headers"])).json()
        return len(listed) == 2

    await eventually(logged, timeout=20, what="both emails in the delivery log")
    # One partition per account: the late status was handled before the bounce that followed.
    listed = (await api.get("/email-deliveries", headers=account["headers"])).json()
    assert [(e["email_id"], e["status"]) for e in listed] == [
        (str(bounced_id), "bounced"),
        (str(email_id), "sent"),
    ]
    assert listed[1]["attempts"] == 2
    assert listed[1]["reason"] is None
    bounced = await api.get(
        "/email-deliveries", headers=account["headers"], params={"status": "bounced"}
    )
    assert [e["recipient"] for e in bounced.json()] == ["bounce@buyer.example.com"]
    about = await api.get(
        "/email-deliveries", headers=account["headers"], params={"document_id": str(invoice_id)}
    )
    assert [e["email_id"] for e in about.json()] == [str(email_id)]

    other = await api.post(
        "/accounts",
        json={
            "name": "Other Ltd",
            "owner": {"name": "Oli", "email": f"oli-{uuid.uuid4().hex[:6]}@other.example.com"},
        },
    )
    other_headers = {"Authorization": f"Bearer {other.json()['api_key']}"}
    assert (await api.get("/email-deliveries", headers=other_headers)).json() == []
    refused = await api.get(
        "/email-deliveries", params={"status": "marketing"}, headers=other_headers
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "status"
