"""The system driven over HTTP, checked at the SMTP server and in every database."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import hmac
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.processes import free_port
from devstack.stack import SERVICES, Stack
from devstack.testing import (
    MailCatcher,
    add_staff,
    eventually,
    open_event,
    produce,
    read_all_topics,
    read_topic,
    rows_mentioning,
    sealed,
    security_admin_of,
    served,
)
from notifications.settings import NotificationsSettings
from shared.contracts import AccessActor, AccessPurpose, DataAccessed, new_envelope
from shared.crypto import KeyDestroyedError
from shared.settings import KeyStoreSettings
from shared.signing import verify

pytestmark = pytest.mark.e2e
OWNER_PASSWORD = "the account owner's passphrase"


async def _fetch(stack: Stack, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
    dsn = stack.database_url(service).replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


@pytest.mark.clause("PURPOSE", "TERMINATION", "STAFF-ACCESS", "USE")
async def test_invoice_email_staff_audit_export_and_purge(system: Stack, mail: MailCatcher) -> None:
    """TERMINATION, STAFF-ACCESS, PURPOSE, USE: the first flow end to end."""
    tag = uuid.uuid4().hex[:8]
    owner_email = f"owner-{tag}@acme.example.com"
    customer_email = f"buyer-{tag}@buyer.example.com"
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as api:
        opened = await api.post(
            "/accounts",
            json={
                "name": f"Acme {tag}",
                "plan": "free",  # no grace period: the export is attached, the purge follows
                "owner": {"name": "Ada", "email": owner_email, "password": OWNER_PASSWORD},
            },
        )
        assert opened.status_code == 201, opened.text
        account_id = opened.json()["account"]["id"]
        owner = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = (
            await api.post(
                "/customers", headers=owner, json={"name": f"Bob {tag}", "email": customer_email}
            )
        ).json()

        numbers = []
        for amount in ("100", "250.50"):
            draft = await api.post(
                "/invoices",
                headers=owner,
                json={
                    "customer_id": customer["id"],
                    "currency": "EUR",
                    "due_date": "2030-01-31",
                    "lines": [{"description": "Consulting", "quantity": "1", "unit_price": amount}],
                },
            )
            issued = await api.post(f"/invoices/{draft.json()['id']}/issue", headers=owner)
            assert issued.status_code == 200, issued.text
            numbers.append(issued.json()["number"])

        # Exactly one email per issued invoice reaches the SMTP server.
        await mail.wait_for(lambda ms: len([m for m in ms if customer_email in m["to"]]) >= 2)
        await asyncio.sleep(2)  # a duplicate would arrive in this time
        invoice_mail = mail.to(customer_email)
        assert sorted(m["subject"].split()[1] for m in invoice_mail) == sorted(numbers)
        assert len({m["message_id"] for m in invoice_mail}) == 2

        # A named staff member reads under a grant; the audit trail keeps the read and its purpose.
        security_admin = await security_admin_of(system.service_env("billing"), api)
        staff_id, staff_headers = await add_staff(
            api, security_admin, roles=["support"], name="Sam Support"
        )
        grant = await api.post(
            "/access-grants",
            headers=owner,
            json={
                "staff_id": staff_id,
                "purpose": "support",
                "reason": f"TICKET-{tag}",
                "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        )
        assert grant.status_code == 201, grant.text
        read = await api.get(
            f"/staff/accounts/{account_id}/customers/{customer['id']}",
            params={"purpose": "support"},
            headers=staff_headers,
        )
        assert read.status_code == 200, read.text

        async def grant_and_read() -> list[Any] | None:
            rows = await _fetch(
                system,
                "audit",
                "SELECT e.kind, p.actor_name, e.purpose, p.reason FROM audit_entry e "
                "JOIN audit_personal p USING (global_seq) WHERE e.account_id = $1",
                uuid.UUID(account_id),
            )
            return rows if len(rows) >= 2 else None

        # Two topics: the grant's opening and the read may reach audit in either order.
        trail = await eventually(grant_and_read, what="the grant and the read in the trail")
        assert sorted(tuple(r) for r in trail) == [
            ("data-access", "Sam Support", "support", f"TICKET-{tag}"),
            ("grant-opened", "Ada", "support", f"TICKET-{tag}"),
        ]

        # The owner terminates: the export is emailed, then every service purges.
        terminated = await api.post(
            "/account/termination", headers=owner, json={"password": OWNER_PASSWORD}
        )
        assert terminated.status_code == 202

    messages = await mail.wait_for(lambda ms: any(owner_email in m["to"] for m in ms), timeout=60)
    export_mail = next(m for m in messages if owner_email in m["to"])
    attachment = export_mail["attachments"][0]
    async with httpx.AsyncClient(base_url=system.mail_url) as inbox:
        download = await inbox.get(
            f"/messages/{export_mail['id']}/attachments/{attachment['index']}"
        )
    bundle = zipfile.ZipFile(io.BytesIO(download.content))
    customers = list(csv.DictReader(io.StringIO(bundle.read("billing-customer.csv").decode())))
    invoices = list(csv.DictReader(io.StringIO(bundle.read("billing-invoice.csv").decode())))
    lines = list(csv.DictReader(io.StringIO(bundle.read("billing-invoice_line.csv").decode())))
    assert [c["email"] for c in customers] == [customer_email]
    assert sorted(i["number"] for i in invoices) == sorted(numbers)
    assert {line["invoice_id"] for line in lines} == {i["id"] for i in invoices}
    assert {line["description"] for line in lines} == {"Consulting"}
    assert "manifest.json" in bundle.namelist()

    certificates = await eventually(
        lambda: _fetch(system, "retention", "SELECT services FROM purge_certificate"),
        timeout=60,
        what="the purge certificate",
    )
    assert certificates
    await _termination_is_one_trace(system)
    # The last events (purge.completed, account.purged) leave their outboxes once acknowledged.
    for spec in SERVICES:

        async def nothing_left(service: str = spec.name) -> bool:
            return await rows_mentioning(system.database_url(service), account_id) == {}

        await eventually(nothing_left, timeout=15, what=f"no row about the account in {spec.name}")


OPERATOR_TOKENS = {  # the services' development defaults
    "billing": "dev-only-operator-token",
    "notifications": "dev-only-operator-token",
    "retention": "dev-only-operator-token",
    "audit": "dev-only-audit-operator-token",
}
PARTICIPANTS = ("audit", "billing", "notifications")


async def _recent_spans(system: Stack, service: str) -> list[dict[str, Any]]:
    """The service's recent spans, as the ops dashboard reads them (no collector is set)."""
    async with httpx.AsyncClient(base_url=system.service_url(service), timeout=30) as client:
        answer = await client.get(
            "/traces",
            params={"limit": 5000},
            headers={"Authorization": f"Bearer {OPERATOR_TOKENS[service]}"},
        )
    assert answer.status_code == 200, answer.text
    spans: list[dict[str, Any]] = answer.json()
    return spans


async def _termination_is_one_trace(system: Stack) -> None:
    """The termination, from the owner's request to the certificate's email, is one trace
    with a span per step in every service, and PostgreSQL spans in each."""

    async def termination_requests() -> list[dict[str, Any]]:
        return [
            span
            for span in await _recent_spans(system, "billing")
            if span["name"] == "POST /account/termination"
            and span["attributes"].get("http.response.status_code") == 202
        ]

    # Billing exports its spans a second or so after they end, and the flow can be quicker.
    requests = await eventually(
        termination_requests, timeout=10, interval=0.5, what="billing's termination request span"
    )
    trace_id = requests[-1]["trace_id"]

    async def spans_of_the_trace() -> dict[str, list[dict[str, Any]]]:
        return {
            spec.name: [
                s for s in await _recent_spans(system, spec.name) if s["trace_id"] == trace_id
            ]
            for spec in SERVICES
        }

    async def whole() -> bool:
        # Each service exports its spans a second or so after they end, a parent after its
        # children: wait until everything below holds, then say what did not.
        return _trace_problems(await spans_of_the_trace()) == []

    with contextlib.suppress(AssertionError):
        await eventually(whole, timeout=30, interval=1, what="the termination's whole trace")
    assert _trace_problems(await spans_of_the_trace()) == []


def _trace_problems(spans: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What the termination's trace lacks: a step, a participant's part, the certificate's
    email, PostgreSQL spans in a service, or a span whose parent is not in the trace."""
    names = {service: {s["name"] for s in found} for service, found in spans.items()}
    problems = [
        f"retention: no {step}"
        for step in ("export", "deliver", "purge", "certificate")
        if f"termination {step}" not in names["retention"]
    ]
    problems += [
        f"{service}: no {part}"
        for service in PARTICIPANTS
        for part in ("termination export slice", "termination purge rows")
        if part not in names[service]
    ]
    if sum(s["name"] == "smtp send" for s in spans["notifications"]) < 2:
        problems.append("notifications: not both emails (the export, the certificate)")
    problems += [
        f"{service}: no PostgreSQL span"
        for service, found in spans.items()
        if not any(s["attributes"].get("db.system.name") == "postgresql" for s in found)
    ]
    # One tree: every span's parent is in the trace, in its own service or the one whose event
    # it consumed; only the owner's request has none.
    everyone = {s["span_id"] for found in spans.values() for s in found}
    orphans = [
        f"{s['service']}: {s['name']}"
        for found in spans.values()
        for s in found
        if s["parent_id"] not in everyone
    ]
    if orphans != ["billing: POST /account/termination"]:
        problems.append(f"spans without their parent in the trace: {orphans}")
    return problems


async def test_every_service_reports_health_and_metrics(system: Stack) -> None:
    """Consumer-only services too: /healthz checks database and broker, /metrics is Prometheus
    with the consumer's lag per partition and requests per route, and only labels on the
    allow-list."""
    async with httpx.AsyncClient(timeout=10) as client:
        for spec in SERVICES:
            health = await client.get(f"{system.service_url(spec.name)}/healthz")
            assert health.status_code == 200, spec.name
            checks = health.json()["checks"]
            assert checks["database"] == "ok"
            assert checks["kafka"] == "ok"
            assert checks["redeliveries"] == "ok"
            assert checks["relay"] == "ok"
            assert checks["consumer"].startswith("lag ")
            refused = await client.get(f"{system.service_url(spec.name)}/traces")
            assert refused.status_code == 401
            metrics = await client.get(f"{system.service_url(spec.name)}/metrics")
            assert "outbox_relayed_events" in metrics.text, spec.name
            # Requests per route, method and status, consumer services' routes included.
            request = (
                'http_server_request_duration_seconds_count{http_request_method="GET",'
                'http_response_status_code="401",http_route="/traces"}'
            )
            assert request in metrics.text, f"{spec.name}: its requests by route"
            group = f"{system.topic_prefix}{spec.name}"
            lag = f'messaging_kafka_consumer_lag{{messaging_consumer_group_name="{group}"'
            assert lag in metrics.text, f"{spec.name}: its consumer's lag, per partition"
            # USE: every label the service exposes is on the telemetry allow-list.
            dropped = 'quittance_telemetry_dropped_total{what="metric label"} 0.0'
            assert dropped in metrics.text, f"{spec.name}: a metric label is off the allow-list"


async def test_a_malformed_event_is_dead_lettered_and_the_next_one_is_handled(
    system: Stack,
) -> None:
    """A message that fails validation goes to <topic>.dlq with a reason; the consumer goes on."""
    topic = system.topic_prefix + "data.accessed"
    account_id = uuid.uuid4()
    await produce(
        system.bootstrap_servers,
        topic,
        b'{"type": "data.accessed", "source": "/quittance/billing", "data": {"purpose": 7}}',
        key=str(account_id).encode(),
        headers=[("content-type", b"application/json")],
    )
    valid = new_envelope(
        DataAccessed(
            account_id=account_id,
            access_id=uuid.uuid4(),
            actor=AccessActor.STAFF,
            actor_id="s-1",
            actor_name="Sam",
            purpose=AccessPurpose.SECURITY,
            reason="INC-7",
            grant_id=None,
            resource_type="customer",
            resource_id="c-1",
            accessed_at=datetime.now(UTC),
        ),
        source="billing",
    )
    await produce(
        system.bootstrap_servers,
        topic,
        await sealed(valid, KeyStoreSettings(url=system.keystore_url())),
        key=str(account_id).encode(),
        headers=[("content-type", b"application/json")],
    )

    dead = await read_topic(system.bootstrap_servers, topic + ".dlq", count=1, key=str(account_id))
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert "ValidationError" in headers["x-dead-letter-reason"]
    assert headers["x-dead-letter-consumer"] == "audit"
    assert (
        dead[0].value
        == b'{"type": "data.accessed", "source": "/quittance/billing", "data": {"purpose": 7}}'
    )
    rows = await eventually(
        lambda: _fetch(
            system, "audit", "SELECT reason FROM audit_personal WHERE account_id = $1", account_id
        ),
        what="the valid event after the dead letter was handled",
    )
    assert [r["reason"] for r in rows] == ["INC-7"]


async def test_killing_notifications_mid_flow_loses_no_email(
    system: Stack, mail: MailCatcher
) -> None:
    """kill -9 while invoices are being emailed: after a restart every invoice is emailed.

    A crash after the SMTP server accepted a message and before its row was marked sent can
    repeat that message, with the same Message-ID; nothing else can be doubled.
    """
    tag = uuid.uuid4().hex[:8]
    customer_email = f"crash-{tag}@buyer.example.com"
    invoices = 30
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as api:
        opened = await api.post(
            "/accounts",
            json={
                "name": f"Crash {tag}",
                "owner": {"name": "Ada", "email": f"o-{tag}@acme.example.com"},
            },
        )
        owner = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = (
            await api.post(
                "/customers", headers=owner, json={"name": "Bob", "email": customer_email}
            )
        ).json()
        drafts = [
            (
                await api.post(
                    "/invoices",
                    headers=owner,
                    json={
                        "customer_id": customer["id"],
                        "currency": "EUR",
                        "due_date": "2030-01-31",
                        "lines": [{"description": "Work", "quantity": "1", "unit_price": "1"}],
                    },
                )
            ).json()["id"]
            for _ in range(invoices)
        ]
        for index, draft in enumerate(drafts):
            assert (await api.post(f"/invoices/{draft}/issue", headers=owner)).status_code == 200
            if index == 5:
                await mail.wait_for(lambda ms: any(customer_email in m["to"] for m in ms))
                system.services["notifications"].kill()

    await asyncio.to_thread(system.start_service, "notifications")
    received = await mail.wait_for(
        lambda ms: len({m["message_id"] for m in ms if customer_email in m["to"]}) >= invoices,
        timeout=90,
    )
    mine = [m for m in received if customer_email in m["to"]]
    subject_of: dict[str, set[str]] = {}
    for message in mine:
        subject_of.setdefault(message["message_id"], set()).add(message["subject"])
    assert len({m["subject"] for m in mine}) == invoices, "every invoice was emailed"
    assert len(subject_of) == invoices, "one Message-ID per invoice: none sent as a new message"
    assert all(len(subjects) == 1 for subjects in subject_of.values()), "a repeat is a copy"
    # Only the sends in flight at the kill (one per sending slot) can have been accepted by
    # the SMTP server and not yet recorded as sent.
    in_flight = NotificationsSettings().concurrent_sends
    assert len(mine) - invoices <= in_flight, f"{len(mine) - invoices} repeats of {invoices}"


@pytest.mark.clause("TERMINATION")
async def test_termination_leaves_nothing_behind_in_databases_topics_stores_or_logs(
    system: Stack, mail: MailCatcher
) -> None:
    """TERMINATION: marked personal values planted everywhere they can go; after the
    certificate none is readable in any database, topic (from offset zero), export store or log
    line, and the account's events can no longer be opened."""
    tag = uuid.uuid4().hex[:10]
    mark = f"PII{tag}"
    owner_email = f"{mark.lower()}-owner@acme.example.com"
    customer_email = f"{mark.lower()}-buyer@buyer.example.com"
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as api:
        opened = await api.post(
            "/accounts",
            json={
                "name": f"Acme {mark}",
                "plan": "free",  # no grace period: the purge follows the export at once
                "owner": {"name": f"Ada {mark}", "email": owner_email, "password": OWNER_PASSWORD},
            },
        )
        account_id = opened.json()["account"]["id"]
        owner = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        customer = (
            await api.post(
                "/customers",
                headers=owner,
                json={"name": f"Bob {mark}", "email": customer_email, "address": f"1 {mark} St"},
            )
        ).json()
        for _ in range(3):
            draft = await api.post(
                "/invoices",
                headers=owner,
                json={
                    "customer_id": customer["id"],
                    "currency": "EUR",
                    "due_date": "2030-01-31",
                    "lines": [
                        {"description": f"Work for {mark}", "quantity": "2", "unit_price": "9"}
                    ],
                },
            )
            assert (
                await api.post(f"/invoices/{draft.json()['id']}/issue", headers=owner)
            ).is_success
        security_admin = await security_admin_of(system.service_env("billing"), api)
        staff_id, staff_headers = await add_staff(
            api, security_admin, roles=["support"], name="Sam Support"
        )
        await api.post(
            "/access-grants",
            headers=owner,
            json={
                "staff_id": staff_id,
                "purpose": "support",
                "reason": f"TICKET {mark}",
                "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        )
        read = await api.get(
            f"/staff/accounts/{account_id}/customers/{customer['id']}",
            params={"purpose": "support"},
            headers=staff_headers,
        )
        assert read.status_code == 200, read.text
        await mail.wait_for(lambda ms: len([m for m in ms if customer_email in m["to"]]) >= 3)
        await eventually(
            lambda: _fetch(
                system,
                "audit",
                "SELECT 1 FROM audit_entry WHERE account_id = $1",
                uuid.UUID(account_id),
            ),
            what="the staff read reached the audit trail",
        )
        confirmed = {"password": OWNER_PASSWORD}
        terminated = await api.post("/account/termination", headers=owner, json=confirmed)
        assert terminated.status_code == 202, terminated.text

    export = await mail.wait_for(lambda ms: any(owner_email in m["to"] for m in ms), timeout=60)
    assert next(m for m in export if owner_email in m["to"])["attachments"]

    async def certified() -> bool:
        sagas = await _fetch(
            system,
            "retention",
            "SELECT 1 FROM termination_saga WHERE account_id = $1",
            uuid.UUID(account_id),
        )
        return not sagas and bool(
            await _fetch(system, "retention", "SELECT 1 FROM purge_certificate")
        )

    await eventually(certified, timeout=60, what="the purge certificate")
    # The last message: the signed certificate, to the owner, verifying with the key retention
    # publishes; the address goes once it is sent (the databases' check below).
    messages = await mail.wait_for(
        lambda ms: any(
            owner_email in m["to"] and m["subject"].startswith("Certificate") for m in ms
        )
    )
    last = next(m for m in messages if owner_email in m["to"] and "Certificate" in m["subject"])
    certificate, signature = mail.attachment(last, 0), mail.attachment(last, 1)
    async with httpx.AsyncClient(base_url=system.service_url("retention"), timeout=30) as retention:
        public_key = (await retention.get("/certificates/signing-key.pem")).content
        published = await retention.get(
            "/certificates",
            params={"id": json.loads(certificate)["certificate_id"], "part": "payload"},
        )
    assert verify(public_key, certificate, signature)
    assert published.content == certificate
    assert mark not in certificate.decode()
    assert account_id not in certificate.decode()

    # Every database, the key store's included.
    for database in [*(spec.name for spec in SERVICES), "keystore"]:
        url = system.database_url(database)

        async def clean(url: str = url) -> bool:
            return (
                await rows_mentioning(url, mark) == {}
                and await rows_mentioning(url, account_id) == {}
            )

        await eventually(clean, timeout=15, what=f"nothing about the account in {database}")

    # Every topic, dead letters included, from offset zero: nothing readable, nothing openable.
    records = await read_all_topics(system.bootstrap_servers, system.topic_prefix)
    assert records, "the topics were read"
    readable = [
        r.topic for r in records if mark.encode() in r.value or mark.lower().encode() in r.value
    ]
    assert readable == [], "a personal value is readable in a topic"
    keystore = KeyStoreSettings(url=system.keystore_url())
    mine = [r for r in records if (r.key or b"").decode() == account_id]
    assert len(mine) > 10
    sealed_events = [r for r in mine if b'"enc:v1:' in r.value]
    assert sealed_events, "the account's personal fields travelled sealed"
    for record in sealed_events:
        with pytest.raises(KeyDestroyedError):
            await open_event(json.loads(record.value), keystore)

    # Every export store, and every log line.
    leftovers = [p for p in system.export_dir.rglob("*") if p.is_file()]
    assert [p for p in leftovers if mark.encode() in p.read_bytes()] == []
    assert leftovers == [], "no bundle, slice or chunk is left in any export store"
    for log in system.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert mark not in text, f"a personal value in {log.name}"
        assert mark.lower() not in text, f"a personal address in {log.name}"


@pytest.mark.clause("LEAST-ACCESS", "COOKIES", "USE")
async def test_an_invited_colleague_gets_the_email_accepts_it_and_signs_in_with_the_cookie(
    system: Stack, mail: MailCatcher
) -> None:
    """LEAST-ACCESS, COOKIES, USE: an invitation crosses billing, the broker and notifications."""
    tag = uuid.uuid4().hex[:8]
    colleague = f"carla-{tag}@acme.example.com"
    password = "the colleague's own passphrase"
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as api:
        opened = await api.post(
            "/accounts",
            json={"name": f"Acme {tag}", "owner": {"name": "Ada", "email": f"ada-{tag}@a.example"}},
        )
        owner = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        invited = await api.post(
            "/users",
            headers=owner,
            json={"name": "Carla", "email": colleague, "role": "accountant"},
        )
        assert invited.status_code == 201, invited.text
        assert invited.json()["status"] == "invited"
        messages = await mail.wait_for(lambda ms: any(colleague in m["to"] for m in ms))
        invitation = next(m for m in messages if colleague in m["to"])
        assert f"Acme {tag}" in invitation["subject"]
        code = invitation["text"].split("invitation code:")[1].split()[0]
        accepted = await api.post("/invitations/accept", json={"token": code, "password": password})
        assert accepted.status_code == 204, accepted.text
        again = await api.post("/invitations/accept", json={"token": code, "password": password})
        assert again.status_code == 422, "an invitation is used once"
        signed_in = await api.post("/sessions", json={"email": colleague, "password": password})
        assert signed_in.status_code == 201, signed_in.text
        assert signed_in.json()["role"] == "accountant"
        cookie = signed_in.headers["set-cookie"].split(";")[0]
        team = await api.get("/users", headers={"Cookie": cookie})
        assert {(u["email"], u["status"]) for u in team.json()} >= {(colleague, "active")}
        # COLLECTED: a sign-in from another browser and system is a security notice by email.
        firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
        elsewhere = await api.post(
            "/sessions",
            json={"email": colleague, "password": password},
            headers={"User-Agent": firefox},
        )
        assert elsewhere.status_code == 201, elsewhere.text
    notices = await mail.wait_for(
        lambda ms: any(colleague in m["to"] and "New sign-in" in m["subject"] for m in ms)
    )
    notice = next(m for m in notices if colleague in m["to"] and "New sign-in" in m["subject"])
    assert "Firefox 121" in notice["text"]
    assert "Linux" in notice["text"]


@pytest.mark.clause("NO-PAN")
async def test_a_customer_pays_on_the_sandbox_page_and_the_statement_shows_it(
    system: Stack,
) -> None:
    """The README's walkthrough: an invoice paid on the gateway's own page (NO-PAN), marked
    paid from the signed webhook the gateway process sends billing; the account's own endpoint
    receives billing's signed webhook; then the statement and the invoice's PDF."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def endpoint(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/hooks", endpoint, methods=["POST"])])
    with served(receiver, free_port()) as hooks_url:
        await _pay_and_download(system, f"{hooks_url}/hooks", received)


async def _pay_and_download(
    system: Stack, hooks_url: str, received: list[tuple[dict[str, str], bytes]]
) -> None:
    cora = f"cora-{uuid.uuid4().hex[:6]}@customer.example.com"
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as billing:
        opened = await billing.post(
            "/accounts",
            json={
                "name": "Walkthrough Ltd",
                "owner": {
                    "name": "Wally",
                    "email": f"wally-{uuid.uuid4().hex[:6]}@walk.example.com",
                    "password": OWNER_PASSWORD,
                },
            },
        )
        headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        registered = await billing.post(
            "/webhook-endpoints",
            headers=headers,
            json={"url": hooks_url, "event_types": ["payment.received"]},
        )
        assert registered.status_code == 201, registered.text
        secret = registered.json()["secret"]
        customer = await billing.post(
            "/customers",
            headers=headers,
            json={"name": "Cora Customer", "email": cora},
        )
        invoice = await billing.post(
            "/invoices",
            headers=headers,
            json={
                "customer_id": customer.json()["id"],
                "lines": [
                    {
                        "description": "Design",
                        "quantity": "3",
                        "unit_price": "100",
                        "tax_rate": "20",
                    }
                ],
                "issue": True,
            },
        )
        assert invoice.json()["total"] == "360.00"
        checkout = await billing.post(
            f"/invoices/{invoice.json()['id']}/checkout", headers=headers, json={}
        )
        assert checkout.status_code == 201, checkout.text
        page_url = checkout.json()["url"]
        assert page_url.startswith(system.payment_gateway_url)
        async with httpx.AsyncClient(timeout=30) as payer:
            assert "card_number" in (await payer.get(page_url)).text
            paid = await payer.post(page_url, data={"card_number": "4242 4242 4242 4242"})
        assert paid.status_code == 303
        assert paid.headers["location"] == f"{system.service_url('billing')}/payments/done"

        async def marked_paid() -> bool:
            found = await billing.get(f"/invoices/{invoice.json()['id']}", headers=headers)
            return bool(found.json()["status"] == "paid")

        await eventually(marked_paid, what="the invoice marked paid")
        # The customer gets the invoice and the receipt of the payment (USE): two events on two
        # topics, handled side by side, so the mail server may see either first.
        mail = MailCatcher(system.mail_url)
        await mail.wait_for(lambda ms: len([m for m in ms if cora in m["to"]]) == 2)
        number = invoice.json()["number"]
        by_subject = {m["subject"]: m for m in mail.to(cora)}
        assert sorted(by_subject) == [
            f"Invoice {number} from Walkthrough Ltd",
            f"Payment received for invoice {number}",
        ]
        receipt = by_subject[f"Payment received for invoice {number}"]
        assert "received your payment of €360.00" in receipt["text"]
        assert "The invoice is paid in full." in receipt["text"]
        await eventually(lambda: received, what="the account's endpoint receiving the webhook")
        hook_headers, hook_body = received[0]
        parts = [part.split("=", 1) for part in hook_headers["quittance-signature"].split(",")]
        timestamp = next(value for name, value in parts if name == "t")
        expected = hmac.new(
            secret.encode(), f"{timestamp}.".encode() + hook_body, hashlib.sha256
        ).hexdigest()
        assert expected in [value for name, value in parts if name == "v1"]
        assert json.loads(hook_body)["data"]["invoice_id"] == invoice.json()["id"]
        assert b"Cora" not in hook_body
        pdf = await billing.get(f"/invoices/{invoice.json()['id']}/pdf", headers=headers)
        assert pdf.status_code == 200
        assert pdf.content.startswith(b"%PDF-")
        statement = await billing.get(
            f"/statements/{customer.json()['id']}", headers=headers, params={"format": "csv"}
        )
        assert statement.status_code == 200
        rows = list(csv.reader(io.StringIO(statement.text)))
        assert [row[1] for row in rows[1:] if row[1] in {"invoice", "payment"}] == [
            "invoice",
            "payment",
        ]
    assert await rows_mentioning(system.database_url("billing"), "4242424242424242") == {}


async def test_the_readme_html_invoice_email_in_the_web_inbox_and_the_delivery_log(
    system: Stack,
) -> None:
    """The README's mail walkthrough: an account writing French with its logo issues an
    invoice; the web inbox shows the HTML email (sandboxed) and the account's delivery log
    shows it sent."""
    tag = uuid.uuid4().hex[:6]
    buyer = f"marie-{tag}@client.example.com"
    async with httpx.AsyncClient(base_url=system.service_url("billing"), timeout=30) as billing:
        opened = await billing.post(
            "/accounts",
            json={
                "name": "Atelier Dupont",
                "owner": {"name": "Jean", "email": f"j-{tag}@a.example"},
            },
        )
        headers = {"Authorization": f"Bearer {opened.json()['api_key']}"}
        changed = await billing.patch(
            "/account",
            headers=headers,
            json={
                "locale": "fr-FR",
                "time_zone": "Europe/Paris",
                "logo_url": "https://atelier.example/logo.png",
            },
        )
        assert changed.status_code == 200, changed.text
        customer = await billing.post(
            "/customers", headers=headers, json={"name": "Marie Client", "email": buyer}
        )
        invoice = await billing.post(
            "/invoices",
            headers=headers,
            json={
                "customer_id": customer.json()["id"],
                "currency": "EUR",
                "lines": [
                    {
                        "description": "Reliure, voir https://atelier.example/reliure",
                        "quantity": "2",
                        "unit_price": "1250.5",
                        "tax_rate": "20",
                    }
                ],
                "issue": True,
            },
        )
        assert invoice.status_code == 201, invoice.text
        number = invoice.json()["number"]
        mail = MailCatcher(system.mail_url)
        await mail.wait_for(lambda ms: any(buyer in m["to"] for m in ms))
        (message,) = mail.to(buyer)
        assert message["subject"] == f"Facture {number} de Atelier Dupont"
        async with httpx.AsyncClient(base_url=system.mail_url, timeout=30) as inbox:
            assert f"Facture {number}" in (await inbox.get("/")).text
            page = await inbox.get(f"/messages/{message['id']}")
            assert f"src='/messages/{message['id']}/html' sandbox" in page.text
            rendered = await inbox.get(f"/messages/{message['id']}/html")
        assert "sandbox" in rendered.headers["content-security-policy"]
        assert '<html lang="fr">' in rendered.text
        assert '<img src="https://atelier.example/logo.png" alt="Atelier Dupont"' in rendered.text
        assert "3\u202f001,20\u00a0€" in rendered.text, "2 x 1 250,50 € + 20 %, French style"
        assert 'href="https://atelier.example/reliure" rel="nofollow noopener noreferrer"' in (
            rendered.text
        )

        async def logged() -> list[Any]:
            found = await billing.get(
                "/email-deliveries",
                headers=headers,
                params={"document_id": invoice.json()["id"]},
            )
            return list(found.json())

        (delivery,) = await eventually(logged, what="the invoice email in the delivery log")
        assert delivery["status"] == "sent"
        assert delivery["kind"] == "invoice"
        assert delivery["recipient"] == buyer
