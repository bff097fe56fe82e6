"""Outbound webhooks to a real HTTP endpoint: signed, minimal, retried, dead-lettered,
redelivered, rotated, never to private addresses (SSRF), none for a terminated account."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing.main import create_app
from billing.settings import BillingSettings, WebhookSettings
from billing.webhooks.dispatcher import WebhookSender
from devstack.processes import free_port
from devstack.testing import eventually, running, served

pytestmark = pytest.mark.integration
PASSWORD = "the hooked owner's passphrase"


@dataclass
class Received:
    """One request the endpoint got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    """A receiver whose answers the tests script per path: a list of statuses, the last repeated;
    0 means: answer too late (a timeout)."""

    received: list[Received] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            path = request.url.path
            self.received.append(Received(path, dict(request.headers), await request.body()))
            plan = self.script.get(path, [200])
            status = plan.pop(0) if len(plan) > 1 else plan[0]
            if status == 0:
                await asyncio.sleep(3)
                status = 200
            headers = {"Retry-After": "0"} if status == 429 else None
            return Response(status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    receiver = Endpoint()
    with served(receiver.app(), free_port()) as url:
        yield receiver, url


@pytest.fixture(scope="module")
async def hooked(billing_settings: BillingSettings) -> AsyncIterator[httpx.AsyncClient]:
    """Billing delivering to local addresses (as under make up), with quick retries."""
    webhooks = WebhookSettings(
        allow_private_addresses=True,
        allow_http=True,
        timeout_s=1,
        max_attempts=3,
        first_retry_s=0.2,
        max_retry_s=0.5,
        poll_interval_s=0.05,
    )
    settings = billing_settings.model_copy(update={"webhooks": webhooks})
    async with running(create_app(settings), base_url="http://billing") as client:
        yield client


@pytest.fixture
async def owner(hooked: httpx.AsyncClient) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    opened = await hooked.post(
        "/accounts",
        json={
            "name": f"Hooked {suffix}",
            "owner": {"name": "H", "email": f"h-{suffix}@hooked.example", "password": PASSWORD},
        },
    )
    assert opened.status_code == 201, opened.text
    headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
    customer = await hooked.post(
        "/customers",
        headers=headers,
        json={"name": "Zoë Secretperson", "email": "zoe@private.example"},
    )
    return {"headers": headers, "customer_id": customer.json()["id"]}


async def _register(
    hooked: httpx.AsyncClient, owner: dict[str, Any], url: str, types: list[str] | None = None
) -> dict[str, Any]:
    made = await hooked.post(
        "/webhook-endpoints",
        headers=owner["headers"],
        json={"url": url, "event_types": types or ["invoice.issued"]},
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def _issue(hooked: httpx.AsyncClient, owner: dict[str, Any]) -> dict[str, Any]:
    issued = await hooked.post(
        "/invoices",
        headers=owner["headers"],
        json={
            "customer_id": owner["customer_id"],
            "lines": [{"description": "Therapy for Zoë", "quantity": "1", "unit_price": "90"}],
            "issue": True,
        },
    )
    assert issued.status_code == 201, issued.text
    body: dict[str, Any] = issued.json()
    return body


async def _deliveries(
    hooked: httpx.AsyncClient, owner: dict[str, Any], endpoint_id: str
) -> list[dict[str, Any]]:
    found = await hooked.get(
        f"/webhook-endpoints/{endpoint_id}/deliveries", headers=owner["headers"]
    )
    assert found.status_code == 200, found.text
    deliveries: list[dict[str, Any]] = found.json()
    return deliveries


def _signatures(header: str) -> tuple[int, list[str]]:
    parts = [part.split("=", 1) for part in header.split(",")]
    return int(next(v for k, v in parts if k == "t")), [v for k, v in parts if k == "v1"]


def _signed_by(secret: str, received: Received) -> bool:
    timestamp, given = _signatures(received.headers["quittance-signature"])
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, v) for v in given)


async def test_an_endpoint_receives_each_event_signed_with_a_stable_id_and_no_personal_data(
    hooked: httpx.AsyncClient, owner: dict[str, Any], endpoint: tuple[Endpoint, str]
) -> None:
    receiver, url = endpoint
    path = f"/ok-{uuid.uuid4().hex[:6]}"
    made = await _register(hooked, owner, f"{url}{path}")
    assert made["secret"].startswith("whsec_")
    invoice = await _issue(hooked, owner)
    (got,) = await eventually(lambda: receiver.at(path), what="the webhook received")
    assert _signed_by(made["secret"], got)
    assert not _signed_by("whsec_another", got)
    body = json.loads(got.body)
    assert body["type"] == "invoice.issued"
    assert got.headers["quittance-event-id"] == body["id"]
    assert body["data"]["invoice_id"] == invoice["id"]
    assert body["data"]["number"] == invoice["number"]
    assert body["data"]["total"] == "90.00"
    for personal in ("Zoë", "zoe@private.example", "Secretperson", "Therapy", "Hooked"):
        assert personal not in got.body.decode(), personal

    async def logged() -> list[dict[str, Any]] | None:
        found = await _deliveries(hooked, owner, made["endpoint"]["id"])
        return found if found and found[0]["status"] == "delivered" else None

    (delivery,) = await eventually(logged, what="the delivery logged")
    assert (delivery["attempts"], delivery["last_status_code"]) == (1, 200)
    assert delivery["body"] == got.body.decode()
    assert delivery["event_id"] == body["id"]


async def test_an_endpoint_whose_name_cannot_resolve_fails_alone(
    hooked: httpx.AsyncClient, owner: dict[str, Any], endpoint: tuple[Endpoint, str]
) -> None:
    """A host name IDNA cannot encode (a 64-character label) once made the resolver raise
    something other than a network error, and the whole batch, every account's deliveries in
    it, was tried again and again."""
    receiver, url = endpoint
    path = f"/fine-{uuid.uuid4().hex[:6]}"
    broken = await _register(hooked, owner, f"http://{'a' * 64}.example/hook")
    fine = await _register(hooked, owner, f"{url}{path}")
    await _issue(hooked, owner)
    await eventually(lambda: receiver.at(path), what="the other endpoint's webhook")

    async def tried() -> dict[str, Any] | None:
        found = await _deliveries(hooked, owner, broken["endpoint"]["id"])
        return found[0] if found and found[0]["attempts"] >= 1 else None

    attempted = await eventually(tried, what="the broken endpoint's attempt recorded")
    assert attempted["status"] in {"pending", "dead"}
    assert attempted["last_error"] == "the host did not resolve"
    assert fine["endpoint"]["id"] != broken["endpoint"]["id"]


async def test_timeouts_429_and_5xx_are_retried_with_the_same_event_id_then_dead_lettered(
    hooked: httpx.AsyncClient, owner: dict[str, Any], endpoint: tuple[Endpoint, str]
) -> None:
    receiver, url = endpoint
    flaky, down, gone = (f"/{name}-{uuid.uuid4().hex[:6]}" for name in ("flaky", "down", "gone"))
    receiver.script[flaky] = [0, 429, 503, 200]
    receiver.script[down] = [500]
    receiver.script[gone] = [410]
    flaky_id = (await _register(hooked, owner, f"{url}{flaky}"))["endpoint"]["id"]
    down_id = (await _register(hooked, owner, f"{url}{down}"))["endpoint"]["id"]
    gone_id = (await _register(hooked, owner, f"{url}{gone}"))["endpoint"]["id"]
    await _issue(hooked, owner)

    async def settled(endpoint_id: str, status: str) -> dict[str, Any] | None:
        found = await _deliveries(hooked, owner, endpoint_id)
        return found[0] if found and found[0]["status"] == status else None

    # max_attempts is 3 here: the timeout, the 429 and the 503 use them all up.
    flaky_delivery = await eventually(lambda: settled(flaky_id, "dead"), what="flaky dead")
    assert flaky_delivery["attempts"] == 3
    assert {r.headers["quittance-event-id"] for r in receiver.at(flaky)} == {
        flaky_delivery["event_id"]
    }
    dead = await eventually(lambda: settled(down_id, "dead"), what="down dead-lettered")
    assert (dead["attempts"], dead["last_status_code"]) == (3, 500)
    assert len(receiver.at(down)) == 3
    failed = await eventually(lambda: settled(gone_id, "failed"), what="gone failed")
    assert (failed["attempts"], failed["last_status_code"]) == (1, 410)
    await asyncio.sleep(1)  # longer than any backoff here: nothing more is tried
    assert len(receiver.at(gone)) == 1
    assert len(receiver.at(down)) == 3

    receiver.script[down] = [200]
    again = await hooked.post(
        f"/webhook-endpoints/{down_id}/deliveries/{dead['id']}/redeliver",
        headers=owner["headers"],
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "pending"
    delivered = await eventually(lambda: settled(down_id, "delivered"), what="redelivered")
    assert delivered["event_id"] == dead["event_id"]
    assert receiver.at(down)[-1].headers["quittance-event-id"] == dead["event_id"]


async def test_a_rotated_secret_signs_beside_the_new_one_until_the_overlap_ends(
    hooked: httpx.AsyncClient, owner: dict[str, Any], endpoint: tuple[Endpoint, str]
) -> None:
    receiver, url = endpoint
    path = f"/rotating-{uuid.uuid4().hex[:6]}"
    made = await _register(hooked, owner, f"{url}{path}")
    rotated = await hooked.post(
        f"/webhook-endpoints/{made['endpoint']['id']}/rotate-secret", headers=owner["headers"]
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] != made["secret"]
    assert rotated.json()["endpoint"]["previous_secret_expires_at"] is not None
    await _issue(hooked, owner)
    (got,) = await eventually(lambda: receiver.at(path), what="the webhook received")
    assert len(_signatures(got.headers["quittance-signature"])[1]) == 2
    assert _signed_by(made["secret"], got)
    assert _signed_by(rotated.json()["secret"], got)


async def test_a_removed_endpoint_and_a_terminated_account_get_nothing_more(
    hooked: httpx.AsyncClient,
    owner: dict[str, Any],
    endpoint: tuple[Endpoint, str],
    billing_settings: BillingSettings,
) -> None:
    receiver, url = endpoint
    removed_path, kept_path = f"/removed-{uuid.uuid4().hex[:6]}", f"/kept-{uuid.uuid4().hex[:6]}"
    removed = await _register(hooked, owner, f"{url}{removed_path}")
    receiver.script[kept_path] = [500]  # kept pending, retried, until the account ends
    kept = await _register(hooked, owner, f"{url}{kept_path}")
    gone = await hooked.delete(
        f"/webhook-endpoints/{removed['endpoint']['id']}", headers=owner["headers"]
    )
    assert gone.json()["disabled_at"] is not None
    await _issue(hooked, owner)
    await eventually(lambda: receiver.at(kept_path), what="the kept endpoint tried")
    # Its next try a few seconds off, whatever the quick retries here did meanwhile: the account
    # ends while the delivery waits for it.
    await _sql(
        billing_settings,
        "UPDATE webhook_delivery SET status = 'PENDING', attempts = 1, "
        "next_attempt_at = now() + interval '4 seconds' WHERE endpoint_id = $1",
        uuid.UUID(kept["endpoint"]["id"]),
    )
    terminated = await hooked.post(
        "/account/termination", headers=owner["headers"], json={"password": PASSWORD}
    )
    assert terminated.status_code == 202, terminated.text
    receiver.script[kept_path] = [200]
    tried_before = len(receiver.at(kept_path))

    async def cancelled() -> bool:
        found = await _deliveries(hooked, owner, kept["endpoint"]["id"])
        return bool(found[0]["status"] == "cancelled")

    await eventually(cancelled, what="the pending delivery cancelled")
    # At most one try that was already under way when the account ended, and it failed.
    assert all(r.headers.get("quittance-event-id") for r in receiver.at(kept_path))
    assert len(receiver.at(kept_path)) <= tried_before + 1
    assert receiver.at(removed_path) == []


async def test_private_loopback_and_metadata_addresses_are_refused(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    """SSRF: with the production defaults no endpoint inside the network is registered."""
    for url in (
        "http://hooks.example.com/in",  # not https
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://app.localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://user:pass@hooks.example.com/hook",
    ):
        refused = await api.post(
            "/webhook-endpoints",
            headers=account["headers"],
            json={"url": url, "event_types": ["invoice.issued"]},
        )
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"][0]["field"] == "url", url
    taken = await api.post(
        "/webhook-endpoints",
        headers=account["headers"],
        json={"url": "https://hooks.example.com/in", "event_types": ["payment.received"]},
    )
    assert taken.status_code == 201, taken.text


async def test_a_name_that_resolves_inside_is_refused_at_delivery_time(
    endpoint: tuple[Endpoint, str],
) -> None:
    """SSRF: the address a name resolves to when sending is checked, and is the one used."""
    receiver, url = endpoint
    port = url.rsplit(":", 1)[1]
    sender = WebhookSender(WebhookSettings())
    try:
        outcome = await sender.post(f"http://localhost:{port}/resolved", b"{}", {})
    finally:
        await sender.close()
    assert outcome.refused
    assert outcome.status is None
    assert receiver.at("/resolved") == []


async def _sql(settings: BillingSettings, query: str, *args: Any) -> None:
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute(query, *args)
    finally:
        await connection.close()
