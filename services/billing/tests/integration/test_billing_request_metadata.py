"""COLLECTED: with a local GeoIP database configured, a session records where it came from,
roughly (city and country, never coordinates); the owner sees it in the session list, and the
new-device notice names it. Without one, nothing is recorded. Request metadata is kept for the
time the account's plan states."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from billing.auth.retention import RequestMetadataRetention
from billing.main import create_app
from billing.settings import BillingSettings
from devstack.testing import enrol_staff, produce, read_events, running, sealed
from shared.contracts import RetentionSweepRequested, new_envelope
from shared.db import create_engine

pytestmark = [pytest.mark.integration, pytest.mark.clause("COLLECTED")]
PASSWORD = "a passphrase for the map"
LYON = "203.0.113.7"  # documentation addresses (RFC 5737), placed on a test map
SOMEWHERE_IN_FRANCE = "198.51.100.9"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"


@pytest.fixture(scope="module")
def geoip_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small City database in MaxMind's format: one network in a city, one in a country."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    france = {"iso_code": "FR", "names": {"en": "France", "fr": "France"}}
    writer.insert_network(
        IPSet(["203.0.113.0/24"]),
        {
            "city": {"names": {"en": "Lyon"}},
            "country": france,
            "location": {"latitude": 45.75, "longitude": 4.85},
        },
    )
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": france})
    path = tmp_path_factory.mktemp("geoip") / "city.mmdb"
    writer.to_db_file(str(path))
    return path


async def _sign_in(
    settings: BillingSettings, email: str, address: str, agent: str
) -> httpx.Response:
    async with running(create_app(settings), "http://billing", client_address=address) as api:
        return await api.post(
            "/sessions",
            json={"email": email, "password": PASSWORD},
            headers={"User-Agent": agent},
        )


async def _sessions(api: httpx.AsyncClient, account: dict[str, Any]) -> list[dict[str, Any]]:
    listed = await api.get("/sessions", headers=account["headers"])
    assert listed.status_code == 200, listed.text
    sessions: list[dict[str, Any]] = listed.json()
    return sessions


async def _open(api: httpx.AsyncClient) -> dict[str, Any]:
    email = f"geo-{uuid.uuid4().hex[:8]}@map.example.com"
    opened = await api.post(
        "/accounts",
        json={"name": "Map Ltd", "owner": {"name": "Ada", "email": email, "password": PASSWORD}},
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    body["email"] = email
    body["headers"] = {"Authorization": f"Bearer {body['api_key']}"}
    return body


@pytest.mark.clause("COLLECTED")
async def test_collected_a_session_records_its_approximate_location_from_the_local_database(
    api: httpx.AsyncClient, billing_settings: BillingSettings, geoip_database: Path
) -> None:
    located = billing_settings.model_copy(update={"geoip_database": geoip_database})
    account = await _open(api)
    assert (await _sign_in(located, account["email"], LYON, CHROME)).status_code == 201
    second = await _sign_in(located, account["email"], SOMEWHERE_IN_FRANCE, FIREFOX)
    assert second.status_code == 201
    elsewhere = await _sign_in(located, account["email"], "192.0.2.1", CHROME)
    assert elsewhere.status_code == 201
    by_address = {s["ip_address"]: s["location"] for s in await _sessions(api, account)}
    assert by_address == {
        LYON: "Lyon, France",
        SOMEWHERE_IN_FRANCE: "France",
        "192.0.2.1": None,  # not on the map
    }
    assert "45.75" not in str(by_address), "a place, never coordinates"
    (notice,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("user.new_device_signed_in"),
        count=1,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    assert notice["data"]["location"] == "France", "the new device's notice says where"


@pytest.mark.clause("COLLECTED")
async def test_collected_without_a_database_no_location_is_recorded(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    assert billing_settings.geoip_database is None
    account = await _open(api)
    assert (await _sign_in(billing_settings, account["email"], LYON, CHROME)).status_code == 201
    assert [s["location"] for s in await _sessions(api, account)] == [None]


@pytest.mark.clause("PLAN-RETENTION", "COLLECTED")
async def test_collected_request_metadata_is_deleted_after_the_time_its_plan_states(
    api: httpx.AsyncClient, billing_settings: BillingSettings, security_admin: dict[str, str]
) -> None:
    """COLLECTED, PLAN-RETENTION: an account's sessions and failed sign-ins go when retention's
    sweep says they are past their plan's time (here free 30 days, standard 90, enterprise 180
    after last use); request metadata of no account goes by billing's own sweep (staff 365 days,
    failures of nobody 30); younger rows and other accounts' stay."""
    staff_email = f"kept-{uuid.uuid4().hex[:8]}@quittance.example.com"
    added = await api.post(
        "/staff",
        headers=security_admin,
        json={"name": "Kept", "email": staff_email, "roles": ["support"]},
    )
    staff_id = uuid.UUID(added.json()["staff"]["id"])
    await enrol_staff(api, email=staff_email, code=added.json()["enrolment_code"])
    bad = await api.post("/staff/sessions", json={"email": staff_email, "password": "wrong one!"})
    assert bad.status_code == 401
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@keep.example.com"
    assert (
        await api.post("/sessions", json={"email": nobody, "password": "whatever it is"})
    ).status_code == 401
    accounts = {}
    sweep_id = uuid.uuid4()
    for plan in ("free", "standard", "enterprise"):
        email = f"{plan}-{uuid.uuid4().hex[:8]}@keep.example.com"
        opened = await api.post(
            "/accounts",
            json={
                "name": f"{plan} Ltd",
                "plan": plan,
                "owner": {"name": "Ada", "email": email, "password": PASSWORD},
            },
        )
        assert opened.status_code == 201, opened.text
        for _ in range(2):
            signed_in = await api.post("/sessions", json={"email": email, "password": PASSWORD})
            assert signed_in.status_code == 201, signed_in.text
        wrong = await api.post("/sessions", json={"email": email, "password": "not it at all"})
        assert wrong.status_code == 401
        api.cookies.clear()
        accounts[plan] = uuid.UUID(opened.json()["account"]["id"])
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    engine = create_engine(billing_settings.database_url, pool_size=1)
    try:
        # One session of each account was last used 45 days ago, its failure as old; the staff
        # member's session and failure 100 days ago, and the failure of nobody 45.
        for account_id in accounts.values():
            await connection.execute(
                "UPDATE web_session SET last_seen_at = now() - interval '45 days', "
                "created_at = now() - interval '46 days' "
                "WHERE id = (SELECT id FROM web_session WHERE account_id = $1 LIMIT 1)",
                account_id,
            )
            await connection.execute(
                "UPDATE sign_in_failure SET created_at = now() - interval '45 days' "
                "WHERE account_id = $1",
                account_id,
            )
        for table in ("web_session", "sign_in_failure"):
            column = "last_seen_at" if table == "web_session" else "created_at"
            await connection.execute(
                f"UPDATE {table} SET {column} = now() - interval '100 days' "  # noqa: S608
                "WHERE staff_id = $1",
                staff_id,
            )
        await connection.execute(
            "UPDATE sign_in_failure SET created_at = now() - interval '45 days' "
            "WHERE account_id IS NULL AND staff_id IS NULL "
            "AND created_at > now() - interval '1 hour'"
        )
        deleted = await RequestMetadataRetention(engine=engine, interval_s=3600).sweep()
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM web_session WHERE account_id = ANY($1::uuid[])",
                list(accounts.values()),
            )
            == 6
        ), "billing's own sweep leaves accounts' rows to their plan's"
        as_of = datetime.now(UTC)
        for plan, account_id in accounts.items():
            days = {"free": 30, "standard": 90, "enterprise": 180}[plan]
            envelope = new_envelope(
                RetentionSweepRequested(
                    account_id=account_id,
                    sweep_id=sweep_id,
                    dry_run=False,
                    as_of=as_of,
                    cutoffs={"request-metadata": as_of - timedelta(days=days)},
                ),
                source="retention",
            )
            await produce(
                billing_settings.kafka.bootstrap_servers,
                billing_settings.kafka.topic(envelope.type),
                await sealed(envelope, billing_settings.keystore),
                key=envelope.subject.encode(),
                headers=[("content-type", b"application/json")],
            )
        reports = {
            report["subject"]: report["data"]
            for account_id in accounts.values()
            for report in await read_events(
                billing_settings.kafka.bootstrap_servers,
                billing_settings.kafka.topic("retention.sweep_reported"),
                count=1,
                key=str(account_id),
                keystore=billing_settings.keystore,
            )
        }
        left = {
            plan: (
                await connection.fetchval(
                    "SELECT count(*) FROM web_session WHERE account_id = $1", account_id
                ),
                await connection.fetchval(
                    "SELECT count(*) FROM sign_in_failure WHERE account_id = $1", account_id
                ),
            )
            for plan, account_id in accounts.items()
        }
        staff_left = [
            await connection.fetchval(f"SELECT count(*) FROM {table} WHERE staff_id = $1", staff_id)  # noqa: S608
            for table in ("web_session", "sign_in_failure")
        ]
        unclaimed_recent = await connection.fetchval(
            "SELECT count(*) FROM sign_in_failure WHERE account_id IS NULL AND staff_id IS NULL "
            "AND created_at > now() - interval '50 days'"
        )
    finally:
        await connection.close()
        await engine.dispose()
    # 45 days: past free's 30, inside standard's 90 and enterprise's 180.
    assert left == {"free": (1, 0), "standard": (2, 1), "enterprise": (2, 1)}
    assert staff_left == [1, 1], "100 days is inside staff's 365"
    assert unclaimed_recent == 0, "a failure of nobody goes after 30 days"
    assert deleted >= 1
    free = reports[str(accounts["free"])]
    assert {t["table"]: t["rows"] for t in free["tables"]} == {
        "web_session": 1,
        "sign_in_failure": 1,
    }
    assert not free["dry_run"]
    assert not free["held"]
    assert all(t["rows"] == 0 for t in reports[str(accounts["standard"])]["tables"])


@pytest.mark.clause("COLLECTED")
async def test_collected_a_new_device_is_noticed_even_after_old_sessions_were_deleted(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    """The sweep deletes old sessions; the user's last sign-in stays, so an intruder signing in
    to a dormant account from a new device still sets off the notice."""
    account = await _open(api)
    assert (await _sign_in(billing_settings, account["email"], LYON, CHROME)).status_code == 201
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute(
            "DELETE FROM web_session WHERE account_id = $1", uuid.UUID(account["account"]["id"])
        )
    finally:
        await connection.close()
    again = await _sign_in(billing_settings, account["email"], SOMEWHERE_IN_FRANCE, FIREFOX)
    assert again.status_code == 201
    (notice,) = await read_events(
        billing_settings.kafka.bootstrap_servers,
        billing_settings.kafka.topic("user.new_device_signed_in"),
        count=1,
        key=account["account"]["id"],
        keystore=billing_settings.keystore,
    )
    assert notice["data"]["browser"].startswith("Firefox")
