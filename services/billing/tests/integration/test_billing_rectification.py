"""RECTIFY: the company, its billing details, users and customers are corrected through the API;
every change is recorded (who, when, which fields) and announced; the next invoice prints the new
details while issued invoices keep theirs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from billing.settings import BillingSettings
from devstack.testing import read_events, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.clause("RECTIFY")]
DUE = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()


def _invoice(customer_id: str, *, issue: bool, currency: str | None = "EUR") -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "due_date": DUE,
        "lines": [{"description": "Consulting", "quantity": "1", "unit_price": "100"}],
        "issue": issue,
    }
    if currency is not None:
        body["currency"] = currency
    return body


async def _issue(
    api: httpx.AsyncClient, account: dict[str, Any], customer_id: str, *, batch: bool
) -> dict[str, Any]:
    """Issue an invoice by either path: drafted and issued at once (the batch), or in two steps."""
    headers = account["headers"]
    if batch:
        issued = await api.post(
            "/invoices", headers=headers, json=_invoice(customer_id, issue=True)
        )
    else:
        draft = await api.post(
            "/invoices", headers=headers, json=_invoice(customer_id, issue=False)
        )
        assert draft.json()["seller"] is None, "a draft has no snapshot yet"
        issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=headers)
    assert issued.status_code in {200, 201}, issued.text
    body: dict[str, Any] = issued.json()
    return body


async def _changes(api: httpx.AsyncClient, account: dict[str, Any]) -> list[dict[str, Any]]:
    listed = await api.get("/account/changes", headers=account["headers"])
    assert listed.status_code == 200, listed.text
    changes: list[dict[str, Any]] = listed.json()
    return changes


@pytest.mark.clause("RECTIFY")
@pytest.mark.parametrize("batch", [True, False], ids=["issued-at-once", "issued-from-draft"])
async def test_the_next_invoice_prints_the_corrected_details_and_issued_ones_keep_theirs(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
    batch: bool,
) -> None:
    """RECTIFY: company and customer details corrected between two invoices."""
    headers = account["headers"]
    before = await _issue(api, account, customer["id"], batch=batch)
    assert before["seller"] == {"name": account["account"]["name"], "address": None, "tax_id": None}
    assert before["bill_to"] == {
        "name": "Bob Buyer",
        "email": customer["email"],
        "address": None,
        "tax_id": None,
    }

    changed = await api.patch(
        "/account",
        headers=headers,
        json={
            "name": "Acme Renamed SA",
            "address": "1 New Street, Lyon",
            "tax_id": "FR40303265045",
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["address"] == "1 New Street, Lyon"
    moved = await api.patch(
        f"/customers/{customer['id']}", headers=headers, json={"address": "9 Buyer Road, Lille"}
    )
    assert moved.status_code == 200, moved.text

    after = await _issue(api, account, customer["id"], batch=batch)
    assert after["seller"] == {
        "name": "Acme Renamed SA",
        "address": "1 New Street, Lyon",
        "tax_id": "FR40303265045",
    }
    assert after["bill_to"]["address"] == "9 Buyer Road, Lille"
    again = await api.get(f"/invoices/{before['id']}", headers=headers)
    assert again.json()["seller"] == before["seller"], "an issued invoice keeps its snapshot"
    assert again.json()["bill_to"] == before["bill_to"]

    # The email is built from the event: it carries the new details, sealed on the broker.
    events = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("invoice.issued"),
        count=2,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    latest = next(e for e in events if e["data"]["invoice_id"] == after["id"])
    assert latest["data"]["seller_address"] == "1 New Street, Lyon"
    assert latest["data"]["seller_tax_id"] == "FR40303265045"
    assert latest["data"]["customer"]["address"] == "9 Buyer Road, Lille"


@pytest.mark.clause("RECTIFY")
async def test_every_change_is_recorded_and_announced_by_field_names_only(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    """RECTIFY: who, when, which fields; the values stay in their rows, off the record."""
    headers, account_id = account["headers"], account["account"]["id"]
    marker = f"Rue Marqueur {uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC)
    changed = await api.patch(
        f"/customers/{customer['id']}",
        headers=headers,
        json={"name": "Robert Buyer", "address": marker, "email": customer["email"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Robert Buyer"

    (record,) = await _changes(api, account)
    assert record["subject"] == "customer"
    assert record["subject_id"] == customer["id"]
    assert record["fields"] == ["address", "name"], "the email sent unchanged is no change"
    assert record["changed_by_user_id"] == account["owner"]["id"]
    assert datetime.fromisoformat(record["created_at"]) >= started - timedelta(seconds=5)

    (raw,) = await read_topic(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("details.changed"),
        count=1,
        key=account_id,
    )
    assert marker.encode() not in raw.value, "values are not announced, names only"
    assert b"Ada Owner" not in raw.value, "who changed it is sealed on the broker"
    (event,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("details.changed"),
        count=1,
        key=account_id,
        keystore=billing_settings.keystore,
    )
    assert event["data"]["change_id"] == record["id"]
    assert event["data"]["fields"] == ["address", "name"]
    assert event["data"]["changed_by_name"] == "Ada Owner"
    assert event["data"]["notice_email"] is None, "a customer's correction needs no notice"

    # The same values again: nothing changes, nothing is recorded.
    same = await api.patch(
        f"/customers/{customer['id']}", headers=headers, json={"address": marker}
    )
    assert same.status_code == 200, same.text
    assert len(await _changes(api, account)) == 1


@pytest.mark.clause("RECTIFY")
async def test_a_change_of_company_details_notifies_the_owner(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    """RECTIFY: the owner is told which of the company's details changed, and by whom."""
    changed = await api.patch(
        "/account",
        headers=account["headers"],
        json={"currency": "JPY", "locale": "fr-FR", "time_zone": "Europe/Paris"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["currency"] == "JPY"
    (event,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("details.changed"),
        count=1,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    assert event["data"]["subject"] == "account"
    assert event["data"]["fields"] == ["currency", "locale", "time_zone"]
    assert event["data"]["notice_email"] == account["owner"]["email"]


def _zone_not_on_utcs_date() -> str:
    """A time zone whose date differs from UTC's right now: UTC-12 before noon UTC (still
    yesterday there), UTC+14 from 10:00 UTC (already tomorrow)."""
    return "Etc/GMT+12" if datetime.now(UTC).hour < 12 else "Pacific/Kiritimati"


@pytest.mark.clause("RECTIFY")
@pytest.mark.parametrize("batch", [True, False], ids=["issued-at-once", "issued-from-draft"])
async def test_invoices_use_the_accounts_currency_and_are_dated_in_its_time_zone(
    api: httpx.AsyncClient, account: dict[str, Any], customer: dict[str, Any], batch: bool
) -> None:
    """RECTIFY: the billing details govern new invoices (currency by default, the issue date)."""
    headers = account["headers"]
    zone = _zone_not_on_utcs_date()
    changed = await api.patch(
        "/account", headers=headers, json={"currency": "JPY", "time_zone": zone}
    )
    assert changed.status_code == 200, changed.text
    local_dates = {datetime.now(ZoneInfo(zone)).date()}
    utc_dates = {datetime.now(UTC).date()}
    body = _invoice(customer["id"], issue=batch, currency=None)
    # Due on the seller's own today, which west of UTC is before UTC's today: accepted.
    body["due_date"] = min(local_dates).isoformat()
    issued = await api.post("/invoices", headers=headers, json=body)
    assert issued.status_code == 201, issued.text
    if not batch:
        issued = await api.post(f"/invoices/{issued.json()['id']}/issue", headers=headers)
        assert issued.status_code == 200, issued.text
    local_dates.add(datetime.now(ZoneInfo(zone)).date())  # the request may cross midnight
    utc_dates.add(datetime.now(UTC).date())
    assert issued.json()["currency"] == "JPY"
    assert issued.json()["total"] == "100"
    issue_date = date.fromisoformat(issued.json()["issue_date"])
    assert issue_date in local_dates
    assert issue_date not in utc_dates or local_dates & utc_dates, "dated where the seller is"


async def test_re_authentication_is_throttled_like_sign_in(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    """A stolen key or session cannot guess the password through a change that asks for it."""
    headers, new_email = account["headers"], f"x-{uuid.uuid4().hex[:6]}@acme.example.com"
    wrong = {"email": new_email, "password": "a wrong guess at it"}
    for _ in range(billing_settings.sign_in_failures_per_user):
        guessed = await api.patch("/users/me", headers=headers, json=wrong)
        assert guessed.status_code == 403, guessed.text
    right = {"email": new_email, "password": account["password"]}
    throttled = await api.patch("/users/me", headers=headers, json=right)
    assert throttled.status_code == 429, throttled.text
    signing_in = await api.post(
        "/sessions", json={"email": account["owner"]["email"], "password": account["password"]}
    )
    assert signing_in.status_code == 429, "the guesses count against sign-in too"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/account", {"name": None}, "name"),
        ("/account", {"name": "   "}, "name"),
        ("/account", {"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ("/account", {"time_zone": "../../etc/passwd"}, "time_zone"),
        ("/account", {"currency": "XAU"}, "currency"),
        ("/account", {"locale": "en_US; DROP TABLE account"}, "locale"),
        ("/account", {"tax_id": "4111 1111 1111 1111"}, "tax_id"),
        ("/account", {"address": "line one\r\nBcc: victim@example.com"}, "address"),
        ("/account", {"plan": "enterprise"}, "plan"),
        ("/account", {"next_invoice_number": 1}, "next_invoice_number"),
        ("/users/me", {"email": "not an address"}, "email"),
        ("/users/me", {"role": "owner"}, "role"),
        ("/customers/{customer_id}", {"email": None}, "email"),
        ("/customers/{customer_id}", {"account_id": str(uuid.uuid4())}, "account_id"),
    ],
)
async def test_a_hostile_correction_is_refused_naming_the_field_and_changes_nothing(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    customer: dict[str, Any],
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    headers = account["headers"]
    url = path.format(customer_id=customer["id"])
    before = [(await api.get(p, headers=headers)).json() for p in ("/account", "/users")]
    refused = await api.patch(url, headers=headers, json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert field in {error["field"] for error in refused.json()["errors"]}
    after = [(await api.get(p, headers=headers)).json() for p in ("/account", "/users")]
    assert after == before
    assert (await api.get(f"/customers/{customer['id']}", headers=headers)).json() == customer
    assert await _changes(api, account) == []


@pytest.mark.clause("RECTIFY")
async def test_a_user_corrects_their_email_with_their_password_and_the_old_address_is_told(
    api: httpx.AsyncClient,
    account: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    """RECTIFY: a user's own details; the sign-in identifier changes only on re-authentication."""
    headers, old_email = account["headers"], account["owner"]["email"]
    new_email = f"ada-new-{uuid.uuid4().hex[:6]}@acme.example.com"
    renamed = await api.patch("/users/me", headers=headers, json={"name": "Ada Lovelace"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Ada Lovelace"

    unconfirmed = await api.patch("/users/me", headers=headers, json={"email": new_email})
    assert unconfirmed.status_code == 403, unconfirmed.text
    assert unconfirmed.json()["errors"] == [
        {"field": "password", "message": "confirm with your password (set one first if needed)"}
    ]
    wrong = await api.patch(
        "/users/me", headers=headers, json={"email": new_email, "password": "not the password"}
    )
    assert wrong.status_code == 403, wrong.text
    assert (await api.get("/users", headers=headers)).json()[0]["email"] == old_email

    moved = await api.patch(
        "/users/me", headers=headers, json={"email": new_email, "password": account["password"]}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["email"] == new_email
    old = await api.post("/sessions", json={"email": old_email, "password": account["password"]})
    assert old.status_code == 401, old.text
    new = await api.post("/sessions", json={"email": new_email, "password": account["password"]})
    assert new.status_code == 201, new.text
    api.cookies.clear()

    events = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("details.changed"),
        count=2,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    by_fields = {tuple(e["data"]["fields"]): e["data"] for e in events}
    assert by_fields[("name",)]["notice_email"] is None
    assert by_fields[("email",)]["notice_email"] == old_email, "the former address is told"
    fields = [change["fields"] for change in await _changes(api, account)]
    assert fields == [["email"], ["name"]]


async def test_a_user_cannot_take_a_colleagues_email(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = account["headers"]
    colleague = f"carla-{uuid.uuid4().hex[:6]}@acme.example.com"
    invited = await api.post(
        "/users", headers=headers, json={"name": "Carla", "email": colleague, "role": "admin"}
    )
    assert invited.status_code == 201, invited.text
    taken = await api.patch(
        "/users/me", headers=headers, json={"email": colleague, "password": account["password"]}
    )
    assert taken.status_code == 409, taken.text
    assert [error["field"] for error in taken.json()["errors"]] == ["email"]
