"""STAFF-ACCESS, LEAST-ACCESS: an account's owner reads who read the account's data, with their
normal billing credentials: billing signs a short-lived token, audit checks it with billing's
public key (billing never calls audit). No other account's entry is ever in the report; security
staff query the whole trail; forged, expired and misdirected tokens are refused."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from audit.main import create_app as create_audit
from audit.settings import AuditSettings
from billing.main import add_security_admin
from billing.main import create_app as create_billing
from billing.settings import BillingSettings
from devstack.testing import enrol_staff, eventually, produce, running, sealed
from shared.contracts import AccessActor, AccessPurpose, DataAccessed, new_envelope
from shared.signing import SigningKey
from shared.tokens import issue_token

pytestmark = [pytest.mark.integration, pytest.mark.clause("STAFF-ACCESS", "LEAST-ACCESS")]
PASSWORD = "an owner's long passphrase"


async def _open(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    opened = await api.post(
        "/accounts",
        json={
            "name": name,
            "owner": {"name": "Ada", "email": f"ada-{uuid.uuid4().hex[:8]}@{name}.example.com"},
        },
    )
    assert opened.status_code == 201, opened.text
    body = opened.json()
    return {"id": body["account"]["id"], "auth": {"Authorization": f"Bearer {body['api_key']}"}}


async def _read_by_staff(
    settings: AuditSettings, account_id: str, purpose: AccessPurpose, reason: str
) -> None:
    envelope = new_envelope(
        DataAccessed(
            account_id=uuid.UUID(account_id),
            access_id=uuid.uuid4(),
            actor=AccessActor.STAFF,
            actor_id="staff-7",
            actor_name="Sam Support",
            purpose=purpose,
            reason=reason,
            grant_id=uuid.uuid4(),
            resource_type="customer",
            resource_id="c-1",
            accessed_at=datetime.now(UTC),
        ),
        source="billing",
    )
    await produce(
        settings.kafka.bootstrap_servers,
        settings.kafka.topic("data.accessed"),
        await sealed(envelope, settings.keystore),
        key=envelope.subject.encode(),
        headers=[("content-type", b"application/json")],
    )


@pytest.mark.clause("STAFF-ACCESS")
async def test_staff_access_the_owner_reads_their_accounts_access_report_and_no_one_elses(
    service_env: Callable[[str], dict[str, Any]],
) -> None:
    billing_settings = BillingSettings(**service_env("billing"))
    audit_settings = AuditSettings(**service_env("audit"))
    async with (
        running(create_audit(audit_settings), base_url="http://audit") as audit,
        running(
            create_billing(billing_settings),
            base_url="http://billing",
            client_address="198.51.100.88",  # sign-ins of its own: no other test's throttle
        ) as api,
    ):
        mine, theirs = await _open(api, "mine"), await _open(api, "theirs")
        await _read_by_staff(audit_settings, mine["id"], AccessPurpose.SUPPORT, "TICKET-1")
        await _read_by_staff(audit_settings, mine["id"], AccessPurpose.LEGAL, "=HYPERLINK(1)")
        await _read_by_staff(audit_settings, theirs["id"], AccessPurpose.SUPPORT, "THEIRS-1")

        issued = await api.post("/account/access-report-token", headers=mine["auth"])
        assert issued.status_code == 200, issued.text
        assert issued.json()["url"].endswith("/access-report")
        bearer = {"Authorization": f"Bearer {issued.json()['token']}"}

        async def two_entries() -> list[dict[str, Any]] | None:
            found = (await audit.get("/access-report", headers=bearer)).json()["entries"]
            return found if len(found) == 2 else None

        report = await eventually(two_entries, what="both reads in the report")
        assert {e["account_id"] for e in report} == {mine["id"]}, "tenant isolation"
        assert [(e["purpose"], e["reason"], e["actor_name"]) for e in report] == [
            ("support", "TICKET-1", "Sam Support"),
            ("legal", "=HYPERLINK(1)", "Sam Support"),
        ]
        assert all(e["grant_id"] for e in report)

        # Filters, a page at a time, and the CSV.
        legal = await audit.get("/access-report", headers=bearer, params={"purpose": "legal"})
        assert [e["reason"] for e in legal.json()["entries"]] == ["=HYPERLINK(1)"]
        page = (await audit.get("/access-report", headers=bearer, params={"limit": 1})).json()
        rest = await audit.get(
            "/access-report", headers=bearer, params={"after": page["next_after"]}
        )
        assert [e["reason"] for e in rest.json()["entries"]] == ["=HYPERLINK(1)"]
        exported = await audit.get("/access-report", headers=bearer, params={"format": "csv"})
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [row["reason"] for row in rows] == ["TICKET-1", "'=HYPERLINK(1)"], "neutralised"

        # Another account is never in it, however asked.
        other = await audit.get(
            "/access-report", headers=bearer, params={"account_id": theirs["id"]}
        )
        assert other.status_code == 422
        assert other.json()["errors"][0]["field"] == "account_id"
        their_token = await api.post("/account/access-report-token", headers=theirs["auth"])
        their_bearer = {"Authorization": f"Bearer {their_token.json()['token']}"}
        theirs_report = await eventually(
            lambda: _entries(audit, their_bearer, 1), what="their read in their report"
        )
        assert [e["reason"] for e in theirs_report] == ["THEIRS-1"]

        # Forged, expired, foreign and misdirected tokens.
        token = issued.json()["token"]
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        billing_key = SigningKey.from_setting(
            billing_settings.audit_token_signing_key.get_secret_value()
        )
        claims = {"sub": "u", "kind": "user", "role": "owner", "account_id": mine["id"]}
        expired = issue_token(billing_key, claims, audience="audit", ttl_s=-60)
        foreign = issue_token(SigningKey.generate(), claims, audience="audit", ttl_s=60)
        elsewhere = issue_token(billing_key, claims, audience="retention", ttl_s=60)
        for bad in (forged, expired, foreign, elsewhere, "", "not.a.token"):
            refused = await audit.get("/access-report", headers={"Authorization": f"Bearer {bad}"})
            assert refused.status_code == 401, bad
        bad_filter = await audit.get("/access-report", headers=bearer, params={"from": "yesterday"})
        assert bad_filter.status_code == 422
        assert bad_filter.json()["errors"][0]["field"] == "from"

        # The owner's token opens no staff query (accountants get no token: the role table).
        assert (await audit.get("/entries", headers=bearer)).status_code == 403

        # Security staff query the whole trail, any account.
        admin_email = f"sec-{uuid.uuid4().hex[:8]}@quittance.example.com"
        _, code = await add_security_admin(billing_settings, name="Sasha", email=admin_email)
        admin = await enrol_staff(api, email=admin_email, code=code)
        staff_token = await api.post("/staff/audit-token", headers=admin)
        assert staff_token.status_code == 200, staff_token.text
        staff_bearer = {"Authorization": f"Bearer {staff_token.json()['token']}"}
        everything = await audit.get(
            "/entries", headers=staff_bearer, params={"account_id": theirs["id"]}
        )
        assert [e["reason"] for e in everything.json()["entries"]] == ["THEIRS-1"]
        assert (await audit.get("/access-report", headers=staff_bearer)).status_code == 403


async def _entries(
    audit: httpx.AsyncClient, bearer: dict[str, str], count: int
) -> list[dict[str, Any]] | None:
    found = (await audit.get("/access-report", headers=bearer)).json()["entries"]
    return found if len(found) >= count else None
