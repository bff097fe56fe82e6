"""LAW: legal staff place and release legal holds; while one stands, billing's purge of the
account does nothing (the participant kit's one purge path asks), and each act is an event
the other services keep and audit records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from billing.settings import BillingSettings
from devstack.testing import add_staff, eventually, produce, read_events, sealed
from shared.contracts import PurgeRequested, new_envelope

pytestmark = [pytest.mark.integration, pytest.mark.clause("LAW")]


async def _legal(api: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    _, headers = await add_staff(api, admin, roles=["legal"], name="Lea Legal")
    return headers


async def _fetchval(settings: BillingSettings, sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


def _hold(account_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "legal_basis": "Court order 2030/117",
        "reason": "Litigation: preserve the invoices of 2029",
        **changes,
    }


@pytest.mark.clause("LAW")
async def test_law_legal_staff_place_and_release_a_hold_and_every_service_is_told(
    api: httpx.AsyncClient,
    security_admin: dict[str, str],
    account: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    legal = await _legal(api, security_admin)
    placed = await api.post(
        "/staff/legal-holds", headers=legal, json=_hold(account["account"]["id"])
    )
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["released_at"] is None
    listed = await api.get(
        "/staff/legal-holds", headers=legal, params={"account_id": account["account"]["id"]}
    )
    assert [h["id"] for h in listed.json()] == [hold["id"]]
    standing = "SELECT count(*) FROM legal_hold WHERE hold_id = $1 AND released_at IS NULL"
    assert await _fetchval(billing_settings, standing, uuid.UUID(hold["id"])) == 1

    released = await api.post(
        f"/staff/legal-holds/{hold['id']}/release", headers=legal, json={"reason": "Settled"}
    )
    assert released.status_code == 200, released.text
    assert released.json()["release_reason"] == "Settled"
    again = await api.post(
        f"/staff/legal-holds/{hold['id']}/release", headers=legal, json={"reason": "Twice"}
    )
    assert again.status_code == 409
    assert await _fetchval(billing_settings, standing, uuid.UUID(hold["id"])) == 0

    events = {
        topic: await read_events(
            billing_settings.kafka.bootstrap_servers,
            billing_settings.kafka.topic(topic),
            count=1,
            key=account["account"]["id"],
            keystore=billing_settings.keystore,
        )
        for topic in ("legal_hold.placed", "legal_hold.released")
    }
    assert events["legal_hold.placed"][0]["data"]["hold_id"] == hold["id"]
    assert events["legal_hold.placed"][0]["data"]["placed_by_name"] == "Lea Legal"
    assert events["legal_hold.released"][0]["data"]["reason"] == "Settled"
    raw = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("legal_hold.placed"),
        count=1,
        key=account["account"]["id"],
    )
    assert "Court order" not in str(raw), "the basis and reason travel sealed"


@pytest.mark.clause("LAW")
async def test_law_only_legal_staff_and_only_valid_holds(
    api: httpx.AsyncClient, security_admin: dict[str, str], account: dict[str, Any]
) -> None:
    legal = await _legal(api, security_admin)
    _, support = await add_staff(api, security_admin, roles=["support"])
    account_id = account["account"]["id"]
    refused = [
        await api.post("/staff/legal-holds", headers=support, json=_hold(account_id)),
        await api.post("/staff/legal-holds", headers=account["headers"], json=_hold(account_id)),
        await api.get("/staff/legal-holds", headers=support),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    cases = {
        "legal_basis": _hold(account_id, legal_basis="  "),
        "reason": _hold(account_id, reason="x\u0000y"),
        "ends_at": _hold(account_id, ends_at="2031-01-01T00:00:00"),  # no timezone
        "account_id": _hold(str(uuid.uuid4())),
    }
    for field, body in cases.items():
        answer = await api.post("/staff/legal-holds", headers=legal, json=body)
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.text, (field, answer.text)
    in_the_past = await api.post(
        "/staff/legal-holds", headers=legal, json=_hold(account_id, ends_at=past)
    )
    assert in_the_past.status_code == 422
    assert "ends_at" in in_the_past.text
    unknown = await api.post(
        f"/staff/legal-holds/{uuid.uuid4()}/release", headers=legal, json={"reason": "x"}
    )
    assert unknown.status_code == 404
    listed = await api.get("/staff/legal-holds", headers=legal, params={"account_id": account_id})
    assert listed.json() == [], "no refused request placed anything"


@pytest.mark.clause("LAW")
async def test_law_billing_purges_nothing_while_a_hold_stands(
    api: httpx.AsyncClient,
    security_admin: dict[str, str],
    account: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    """A purge request that reaches billing under a hold deletes nothing and confirms nothing;
    the one after the release purges and confirms once."""
    legal = await _legal(api, security_admin)
    account_id = account["account"]["id"]
    hold = (await api.post("/staff/legal-holds", headers=legal, json=_hold(account_id))).json()
    saga_id = uuid.uuid4()

    async def request_purge(attempt: int) -> uuid.UUID:
        envelope = new_envelope(
            PurgeRequested(account_id=uuid.UUID(account_id), saga_id=saga_id, attempt=attempt),
            source="retention",
        )
        await produce(
            billing_settings.kafka.bootstrap_servers,
            billing_settings.kafka.topic("purge.requested"),
            await sealed(envelope, billing_settings.keystore),
            key=account_id.encode(),
            headers=[("content-type", b"application/json")],
        )
        return envelope.id

    blocked = await request_purge(1)

    async def handled() -> bool:
        claimed = "SELECT count(*) FROM inbox_message WHERE event_id = $1"
        return bool(await _fetchval(billing_settings, claimed, blocked))

    await eventually(handled, timeout=30, what="billing handled the purge request")
    still = await api.get("/account", headers=account["headers"])
    assert still.status_code == 200, "the account's data is still there"
    account_rows = "SELECT count(*) FROM account WHERE id = $1"
    assert await _fetchval(billing_settings, account_rows, uuid.UUID(account_id)) == 1

    await api.post(
        f"/staff/legal-holds/{hold['id']}/release", headers=legal, json={"reason": "Settled"}
    )
    await request_purge(2)

    async def purged() -> bool:
        return await _fetchval(billing_settings, account_rows, uuid.UUID(account_id)) == 0

    await eventually(purged, timeout=15, what="the account purged after the release")
    # The requests were handled in order on one partition, and confirmations go out in the
    # order they were committed: a confirmation of the request under the hold would come first
    # (and have deleted nothing). Reading only the first never depends on how fast the relay is.
    (first,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("purge.completed"),
        count=1,
        key=account_id,
    )
    assert first["data"]["rows_deleted"] > 0, "the first confirmation is the purge after release"
    marks = "SELECT count(*) FROM legal_hold WHERE account_id = $1"
    assert await _fetchval(billing_settings, marks, uuid.UUID(account_id)) == 0


@pytest.mark.clause("LAW")
async def test_law_a_legal_disclosure_is_recorded_and_is_a_data_access_in_the_trail(
    api: httpx.AsyncClient,
    security_admin: dict[str, str],
    account: dict[str, Any],
    billing_settings: BillingSettings,
) -> None:
    """What was given, to whom, under which basis, by whom: kept by billing and sent to audit
    as a data access by the legal actor (sealed on the broker)."""
    legal = await _legal(api, security_admin)
    _, support = await add_staff(api, security_admin, roles=["support"])
    account_id = account["account"]["id"]
    body = {
        "account_id": account_id,
        "legal_basis": "Tax authority request 2030-55",
        "recipient": "Office of Tax Inspection",
        "what": "Invoices of 2029 (CSV)",
    }
    assert (
        await api.post("/staff/legal-disclosures", headers=support, json=body)
    ).status_code == 403
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for field, bad in {
        "recipient": {**body, "recipient": " "},
        "what": {**body, "what": ""},
        "disclosed_at": {**body, "disclosed_at": future},
        "account_id": {**body, "account_id": str(uuid.uuid4())},
    }.items():
        answer = await api.post("/staff/legal-disclosures", headers=legal, json=bad)
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.text, (field, answer.text)

    recorded = await api.post("/staff/legal-disclosures", headers=legal, json=body)
    assert recorded.status_code == 201, recorded.text
    listed = await api.get(
        "/staff/legal-disclosures", headers=legal, params={"account_id": account_id}
    )
    assert [d["id"] for d in listed.json()] == [recorded.json()["id"]], "refusals kept nothing"

    accesses = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("data.accessed"),
        count=1,
        key=account_id,
        keystore=billing_settings.keystore,
    )
    access = accesses[0]["data"]
    assert (access["actor"], access["purpose"], access["resource_type"]) == (
        "legal",
        "legal",
        "legal_disclosure",
    )
    assert access["resource_id"] == recorded.json()["id"]
    assert access["actor_name"] == "Lea Legal"
    assert "Office of Tax Inspection" in access["reason"]
    assert "Tax authority request 2030-55" in access["reason"]
    raw = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("data.accessed"),
        count=1,
        key=account_id,
    )
    assert "Office of Tax Inspection" not in str(raw), "the recipient travels sealed"
