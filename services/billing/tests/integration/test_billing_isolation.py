"""LEAST-ACCESS: no user or key of one account reads or changes another account's data.

Hypothesis draws a route, a role and which of two accounts attacks the other; the attacker
calls the route with the victim's ids, every time answered 403 or 404, and the victim's data
reads the same afterwards. Billing runs under uvicorn in a thread, so the property runs in
plain synchronous code, as hypothesis wants.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from route_table import api_routes, policies, user_key

from billing.accounts.domain import Role
from billing.main import create_app
from billing.settings import BillingSettings

pytestmark = [pytest.mark.integration, pytest.mark.clause("LEAST-ACCESS")]
# Bodies that would be accepted if the ids were the caller's own, so a refusal is isolation.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/users/{user_id:uuid}"): {"role": "read_only"},
    ("PATCH", "/customers/{customer_id}"): {"name": "Hijacked", "email": "x@attacker.example"},
    ("POST", "/invoices/{invoice_id}/void"): {"reason": "Hijacked"},
    ("POST", "/customers/{customer_id}/contacts"): {"name": "Mallory", "email": "m@x.example"},
    ("POST", "/invoices/{invoice_id}/apply-credit"): {},
    ("POST", "/invoices/{invoice_id}/checkout"): {},
    ("POST", "/payments/{payment_id}/refunds"): {"amount": "1.00"},
}


@dataclass
class Tenant:
    """An account with a user of every role and one of each kind of resource."""

    headers: dict[Role, dict[str, str]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    # What it owns, read once: no attack may change it, so every example compares with it.
    owned: list[Any] | None = None


def _tenant(
    client: httpx.Client, settings: BillingSettings, security_admin: dict[str, str]
) -> Tenant:
    tag = uuid.uuid4().hex[:8]
    owner_email, password = f"o-{tag}@t.example", f"a passphrase {tag}"
    owner_body = {"name": "O", "email": owner_email, "password": password}
    opened = client.post("/accounts", json={"name": f"T {tag}", "owner": owner_body}).json()
    client.post("/sessions", json={"email": owner_email, "password": password})
    client.cookies.clear()
    tenant = Tenant()
    tenant.headers[Role.OWNER] = {"Authorization": f"Bearer {opened['api_key']}"}
    for role in (Role.ADMIN, Role.ACCOUNTANT, Role.READ_ONLY):
        key = asyncio.run(user_key(settings.database_url, opened["account"]["id"], role))
        tenant.headers[role] = {"Authorization": f"Bearer {key}"}
    owner = tenant.headers[Role.OWNER]
    customer = client.post(
        "/customers",
        headers=owner,
        json={
            "name": "C",
            "email": f"c-{tag}@t.example",
            "contacts": [{"name": "K", "email": f"k-{tag}@t.example"}],
        },
    ).json()
    invoice = client.post(
        "/invoices",
        headers=owner,
        json={
            "customer_id": customer["id"],
            "currency": "EUR",
            "due_date": "2030-01-31",
            "lines": [{"description": "Work", "quantity": "1", "unit_price": "5"}],
        },
    ).json()
    issued = client.post(
        "/invoices",
        headers=owner,
        json={
            "customer_id": customer["id"],
            "currency": "EUR",
            "due_date": "2030-01-31",
            "lines": [{"description": "Work", "quantity": "2", "unit_price": "5"}],
            "issue": True,
        },
    ).json()
    credit_note = client.post(
        "/credit-notes",
        headers=owner,
        json={
            "invoice_id": issued["id"],
            "reason": "one too many",
            "lines": [{"position": 1, "quantity": "1"}],
        },
    ).json()
    staff = client.post(
        "/staff",
        headers=security_admin,
        json={"name": "S", "email": f"s-{tag}@q.example", "roles": ["support"]},
    ).json()
    grant = client.post(
        "/access-grants",
        headers=owner,
        json={
            "staff_id": staff["staff"]["id"],
            "purpose": "support",
            "reason": "T-1",
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    ).json()
    user = client.post(
        "/users", headers=owner, json={"name": "U", "email": f"u-{tag}@t.example", "role": "admin"}
    ).json()
    api_key = client.post(
        "/api-keys", headers=owner, json={"name": "k", "scopes": ["customers:read"]}
    ).json()
    (session,) = client.get("/sessions", headers=owner).json()
    payment_id = asyncio.run(_paid(settings, opened["account"]["id"], issued, customer["id"]))
    hook = client.post(
        "/webhook-endpoints",
        headers=owner,
        # An event this test never causes: no delivery of the victim's changes state in the
        # background (the dispatcher retrying it) while the attacks are checked to change nothing.
        json={"url": f"https://hooks-{tag}.example.com/in", "event_types": ["payment.refunded"]},
    ).json()["endpoint"]
    delivery_id = asyncio.run(_dead_letter(settings, opened["account"]["id"], hook["id"]))
    schedule = client.post(
        "/recurring-invoices",
        headers=owner,
        json={
            "customer_id": customer["id"],
            "lines": [{"description": "Monthly", "quantity": "1", "unit_price": "5"}],
            "interval": "month",
            "start_date": "2030-01-01",
        },
    ).json()
    integration = client.post(
        "/integrations", headers=owner, json={"name": "Third", "scopes": ["customers:read"]}
    ).json()["integration"]
    tenant.ids = {
        "customer_id": customer["id"],
        "contact_id": customer["contacts"][0]["id"],
        "invoice_id": invoice["id"],
        "credit_note_id": credit_note["id"],
        "issued_id": issued["id"],
        "grant_id": grant["id"],
        "user_id": user["id"],
        "key_id": api_key["id"],
        "session_id": session["id"],
        "payment_id": payment_id,
        "endpoint_id": hook["id"],
        "delivery_id": delivery_id,
        "integration_id": integration["id"],
        "schedule_id": schedule["id"],
    }
    return tenant


async def _dead_letter(settings: BillingSettings, account_id: str, endpoint_id: str) -> str:
    """A dead-lettered delivery of the endpoint's, which its owner could redeliver."""
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    delivery_id = uuid.uuid4()
    try:
        await connection.execute(
            "INSERT INTO webhook_delivery (id, account_id, endpoint_id, event_id, event_type,"
            " body, status, attempts, next_attempt_at)"
            " VALUES ($1, $2, $3, $4, 'invoice.issued', '{}', 'DEAD', 8, now())",
            delivery_id,
            uuid.UUID(account_id),
            uuid.UUID(endpoint_id),
            uuid.uuid4(),
        )
    finally:
        await connection.close()
    return str(delivery_id)


async def _paid(
    settings: BillingSettings, account_id: str, invoice: dict[str, Any], customer_id: str
) -> str:
    """A payment of the invoice, and credit of the customer's, as a webhook would record them
    (this app has no gateway)."""
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    checkout_id, payment_id = uuid.uuid4(), uuid.uuid4()
    try:
        await connection.execute(
            "INSERT INTO payment_checkout (id, account_id, invoice_id, gateway, amount, currency)"
            " VALUES ($1, $2, $3, 'sandbox', 5, 'EUR')",
            checkout_id,
            uuid.UUID(account_id),
            uuid.UUID(invoice["id"]),
        )
        await connection.execute(
            "INSERT INTO payment (id, account_id, invoice_id, customer_id, checkout_id, gateway,"
            " gateway_payment_id, currency, amount, applied_amount, credit_amount, received_at)"
            " VALUES ($1, $2, $3, $4, $5, 'sandbox', $6, 'EUR', 5, 0, 5, now())",
            payment_id,
            uuid.UUID(account_id),
            uuid.UUID(invoice["id"]),
            uuid.UUID(customer_id),
            checkout_id,
            f"pay_{payment_id.hex}",
        )
        await connection.execute(
            "INSERT INTO customer_credit (id, account_id, customer_id, currency, amount, kind,"
            " payment_id) VALUES ($1, $2, $3, 'EUR', 5, 'OVERPAYMENT', $4)",
            uuid.uuid4(),
            uuid.UUID(account_id),
            uuid.UUID(customer_id),
            payment_id,
        )
    finally:
        await connection.close()
    return str(payment_id)


def _without_last_use(value: Any) -> Any:
    """The data, less when its owner's own key last touched it (reading it touches it)."""
    if isinstance(value, list):
        return [_without_last_use(item) for item in value]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in {"last_used_at", "last_seen_at"}}
    return value


def _what_it_owns(client: httpx.Client, tenant: Tenant) -> list[Any]:
    owner = tenant.headers[Role.OWNER]
    return [
        _without_last_use(client.get(path, headers=owner).json())
        for path in (
            f"/customers/{tenant.ids['customer_id']}",
            f"/invoices/{tenant.ids['invoice_id']}",
            "/invoices",
            "/credit-notes",
            "/payments",
            f"/customers/{tenant.ids['customer_id']}/credit",
            "/webhook-endpoints",
            f"/webhook-endpoints/{tenant.ids['endpoint_id']}/deliveries",
            "/integrations",
            "/recurring-invoices",
            "/users",
            "/access-grants",
            "/api-keys",
            "/account",
            "/account/changes",
            "/sessions",
        )
    ]


@pytest.fixture(scope="module")
def client(billing_url: str) -> Any:
    with httpx.Client(base_url=billing_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def tenants(
    client: httpx.Client, billing_settings: BillingSettings, security_admin: dict[str, str]
) -> tuple[Tenant, Tenant]:
    return (
        _tenant(client, billing_settings, security_admin),
        _tenant(client, billing_settings, security_admin),
    )


def _routes_with_ids(billing_settings: BillingSettings) -> list[tuple[str, str]]:
    """User routes whose path names one of an account's resources."""
    return sorted(
        (method, path)
        for method, path, route in api_routes(create_app(billing_settings))
        if "{" in path and any(policy.roles for policy in policies(route.dependant))
    )


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_role_of_one_account_reaches_anothers_resources_by_id(
    data: st.DataObject,
    client: httpx.Client,
    tenants: tuple[Tenant, Tenant],
    billing_settings: BillingSettings,
) -> None:
    routes = _routes_with_ids(billing_settings)
    method, path = data.draw(st.sampled_from(routes), label="route")
    role = data.draw(st.sampled_from(list(Role)), label="role")
    attacker, victim = tenants if data.draw(st.booleans(), label="first attacks") else tenants[::-1]
    if victim.owned is None:
        victim.owned = _what_it_owns(client, victim)
    url = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: victim.ids[m.group(1)], path)
    response = client.request(
        method, url, headers=attacker.headers[role], json=BODIES.get((method, path))
    )
    assert response.status_code in {403, 404}, f"{method} {url} as {role}: {response.text}"
    assert _what_it_owns(client, victim) == victim.owned


@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.data())
def test_no_list_or_reference_shows_or_uses_another_accounts_data(
    data: st.DataObject, client: httpx.Client, tenants: tuple[Tenant, Tenant]
) -> None:
    role = data.draw(st.sampled_from(list(Role)), label="role")
    attacker, victim = tenants if data.draw(st.booleans(), label="first attacks") else tenants[::-1]
    headers = attacker.headers[role]
    listed = " ".join(
        client.get(path, headers=headers).text
        for path in (
            "/customers",
            "/invoices",
            "/credit-notes",
            "/payments",
            "/users",
            "/access-grants",
            "/api-keys",
        )
    )
    assert not [name for name, id_ in victim.ids.items() if id_ in listed]
    filtered = client.get(
        "/invoices", headers=headers, params={"customer_id": victim.ids["customer_id"]}
    )
    assert filtered.json() == [] or filtered.status_code == 403
    their_notes = client.get(
        "/credit-notes", headers=headers, params={"invoice_id": victim.ids["issued_id"]}
    )
    assert their_notes.json() == [] or their_notes.status_code == 403
    their_payments = client.get(
        "/payments", headers=headers, params={"invoice_id": victim.ids["issued_id"]}
    )
    assert their_payments.json() == [] or their_payments.status_code == 403
    credited = client.post(
        "/credit-notes",
        headers=headers,
        json={"invoice_id": victim.ids["issued_id"], "reason": "Hijacked"},
    )
    assert credited.status_code in {403, 422}, credited.text
    drafted = client.post(
        "/invoices",
        headers=headers,
        json={
            "customer_id": victim.ids["customer_id"],
            "currency": "EUR",
            "due_date": "2030-01-31",
            "lines": [{"description": "Work", "quantity": "1", "unit_price": "5"}],
            "issue": data.draw(st.booleans(), label="issue"),
        },
    )
    assert drafted.status_code in {403, 422}, drafted.text
