"""Idempotency keys on every POST: a retry gets the first answer and changes nothing twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from billing.settings import BillingSettings
from shared.db import create_engine
from shared.idempotency import sweep_idempotency_records

pytestmark = pytest.mark.integration

BOB = {"name": "Bob Buyer", "email": "bob@buyer.example.com"}


def _keyed(account: dict[str, Any], key: str | None = None) -> dict[str, str]:
    return {**account["headers"], "Idempotency-Key": key or str(uuid.uuid4())}


async def _customers(api: httpx.AsyncClient, account: dict[str, Any]) -> list[dict[str, Any]]:
    listed = await api.get("/customers", headers=account["headers"])
    assert listed.status_code == 200, listed.text
    customers: list[dict[str, Any]] = listed.json()
    return customers


async def _sql(settings: BillingSettings, statement: str, *args: Any) -> str:
    connection = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    try:
        return str(await connection.execute(statement, *args))
    finally:
        await connection.close()


async def test_a_retried_post_gets_the_first_answer_and_creates_nothing_twice(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = _keyed(account)
    first = await api.post("/customers", headers=headers, json=BOB)
    retried = await api.post("/customers", headers=headers, json=BOB)
    assert first.status_code == retried.status_code == 201, retried.text
    assert retried.json() == first.json()
    assert retried.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert retried.headers["content-type"] == first.headers["content-type"]
    assert [c["id"] for c in await _customers(api, account)] == [first.json()["id"]]
    again = await api.post("/customers", headers=_keyed(account), json=BOB)
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"], "a new key is a new request"


async def test_the_same_key_with_another_request_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = _keyed(account)
    assert (await api.post("/customers", headers=headers, json=BOB)).status_code == 201
    other = await api.post("/customers", headers=headers, json={**BOB, "name": "Carol"})
    assert other.status_code == 422, other.text
    problem = other.json()
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert other.headers["content-type"] == "application/problem+json"
    elsewhere = await api.post("/api-keys", headers=headers, json={"name": "k", "scopes": []})
    assert elsewhere.status_code == 422, "another path is another request"
    assert elsewhere.json()["type"].endswith("/idempotency-key-reused"), elsewhere.text
    assert [c["name"] for c in await _customers(api, account)] == ["Bob Buyer"]


async def test_a_key_is_its_callers_alone(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    key = str(uuid.uuid4())
    mine = await api.post("/customers", headers=_keyed(account, key), json=BOB)
    other_account = await api.post(
        "/accounts",
        json={
            "name": "Other Ltd",
            "owner": {
                "name": "Otto",
                "email": f"otto-{uuid.uuid4().hex[:6]}@other.example.com",
                "password": "otto's long passphrase",
            },
        },
    )
    other = {"headers": {"Authorization": f"Bearer {other_account.json()['api_key']}"}}
    theirs = await api.post("/customers", headers=_keyed(other, key), json=BOB)
    assert theirs.status_code == 201, theirs.text
    assert "idempotent-replayed" not in theirs.headers, "never another caller's answer"
    assert theirs.json()["id"] != mine.json()["id"]


async def test_a_request_still_running_answers_409_and_a_lapsed_claim_runs_again(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    key = str(uuid.uuid4())
    headers = _keyed(account, key)
    assert (await api.post("/customers", headers=headers, json=BOB)).status_code == 201
    # As while the first request still runs: claimed, not answered, its lease current.
    await _sql(
        billing_settings,
        "UPDATE idempotency_record SET completed_at = NULL, body = NULL, replayable = false, "
        "locked_until = now() + interval '1 minute' WHERE key = $1",
        key,
    )
    running = await api.post("/customers", headers=headers, json=BOB)
    assert running.status_code == 409, running.text
    assert running.headers["retry-after"] == "1"
    assert running.json()["errors"][0]["field"] == "Idempotency-Key"
    # As after the process running it was killed: the lease lapses and a retry runs.
    await _sql(
        billing_settings,
        "UPDATE idempotency_record SET locked_until = now() - interval '1 second' WHERE key = $1",
        key,
    )
    resumed = await api.post("/customers", headers=headers, json=BOB)
    assert resumed.status_code == 201, resumed.text
    replayed = await api.post("/customers", headers=headers, json=BOB)
    assert replayed.json() == resumed.json()
    assert replayed.headers["idempotent-replayed"] == "true"


async def test_a_refused_request_keeps_nothing_so_the_corrected_retry_runs(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = _keyed(account)
    refused = await api.post("/customers", headers=headers, json={"name": "Bob"})
    assert refused.status_code == 422
    refused_again = await api.post("/customers", headers=headers, json={"name": "Bob"})
    assert refused_again.status_code == 422
    assert "idempotent-replayed" not in refused_again.headers
    corrected = await api.post("/customers", headers=headers, json=BOB)
    assert corrected.status_code == 201, "a refusal did not hold the key"


@pytest.mark.parametrize(
    "key",
    ["", "a" * 256, "with space", "ключ", "tab\there"],
    ids=["empty", "long", "space", "utf8", "tab"],
)
async def test_a_malformed_key_is_refused_naming_the_header_and_changes_nothing(
    api: httpx.AsyncClient, account: dict[str, Any], key: str
) -> None:
    raw = {"Authorization": account["headers"]["Authorization"], "Idempotency-Key": key.encode()}
    answered = await api.post("/customers", headers=raw, json=BOB)
    assert answered.status_code == 400, answered.text
    assert answered.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await _customers(api, account) == []


async def test_a_secret_shown_once_is_never_kept_or_shown_twice(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    headers = _keyed(account)
    body = {"name": "nightly export", "scopes": ["customers:read"]}
    made = await api.post("/api-keys", headers=headers, json=body)
    assert made.status_code == 201, made.text
    retried = await api.post("/api-keys", headers=headers, json=body)
    assert retried.status_code == 409, retried.text
    assert made.json()["api_key"] not in retried.text
    assert "completed" in retried.json()["detail"]
    listed = await api.get("/api-keys", headers=account["headers"])
    assert [k["name"] for k in listed.json()].count("nightly export") == 1
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        kept = await connection.fetchrow(
            "SELECT body, headers, replayable FROM idempotency_record WHERE key = $1",
            headers["Idempotency-Key"],
        )
        leaked = await connection.fetchval(
            "SELECT count(*) FROM idempotency_record WHERE position($1 in body) > 0",
            made.json()["api_key"].encode(),
        )
    finally:
        await connection.close()
    assert kept is not None
    assert kept["body"] is None
    assert kept["replayable"] is False
    assert leaked == 0


async def test_signing_up_twice_with_one_key_opens_one_account(api: httpx.AsyncClient) -> None:
    email = f"twice-{uuid.uuid4().hex[:6]}@acme.example.com"
    body = {
        "name": "Twice Ltd",
        "owner": {"name": "Tess", "email": email, "password": "tess's long passphrase"},
    }
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    opened = await api.post("/accounts", headers=headers, json=body)
    assert opened.status_code == 201, opened.text
    retried = await api.post("/accounts", headers=headers, json=body)
    assert retried.status_code == 409, "the answer held the API key: completed, not repeated"
    assert opened.json()["api_key"] not in retried.text


async def test_kept_answers_are_swept_after_a_day(
    api: httpx.AsyncClient, account: dict[str, Any], billing_settings: BillingSettings
) -> None:
    headers = _keyed(account)
    first = await api.post("/customers", headers=headers, json=BOB)
    await _sql(
        billing_settings,
        "UPDATE idempotency_record SET created_at = now() - interval '25 hours' WHERE key = $1",
        headers["Idempotency-Key"],
    )
    engine = create_engine(billing_settings.database_url)
    try:
        assert await sweep_idempotency_records(engine) >= 1
    finally:
        await engine.dispose()
    left = await _sql(
        billing_settings,
        "DELETE FROM idempotency_record WHERE key = $1",
        headers["Idempotency-Key"],
    )
    assert left == "DELETE 0", "the sweep deleted it"
    later = await api.post("/customers", headers=headers, json=BOB)
    assert later.status_code == 201
    assert "idempotent-replayed" not in later.headers, "a day on, the key is a new request"
    assert later.json()["id"] != first.json()["id"]


async def test_identical_requests_at_once_create_one_customer(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = _keyed(account)
    answers = await asyncio.gather(
        *(api.post("/customers", headers=headers, json=BOB) for _ in range(6))
    )
    assert {answer.status_code for answer in answers} <= {201, 409}
    created = {answer.json()["id"] for answer in answers if answer.status_code == 201}
    assert len(created) == 1, [answer.text for answer in answers]
    assert [c["id"] for c in await _customers(api, account)] == list(created)


async def test_a_revoked_key_replays_nothing(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    made = await api.post(
        "/api-keys",
        headers=account["headers"],
        json={"name": "script", "scopes": ["customers:read", "customers:write"]},
    )
    script = {"headers": {"Authorization": f"Bearer {made.json()['api_key']}"}}
    headers = _keyed(script)
    assert (await api.post("/customers", headers=headers, json=BOB)).status_code == 201
    revoked = await api.post(f"/api-keys/{made.json()['id']}/revoke", headers=account["headers"])
    assert revoked.status_code == 200, revoked.text
    retried = await api.post("/customers", headers=headers, json=BOB)
    assert retried.status_code == 401, "a revoked key gets no kept answer, which holds Bob's data"
    assert "bob@buyer.example.com" not in retried.text


async def test_a_redirect_is_not_kept_so_the_followed_request_runs(
    api: httpx.AsyncClient, account: dict[str, Any]
) -> None:
    headers = _keyed(account)
    redirected = await api.post("/customers/", headers=headers, json=BOB)
    assert redirected.status_code == 307, redirected.text
    followed = await api.post("/customers", headers=headers, json=BOB)
    assert followed.status_code == 201, followed.text


async def test_callers_without_credentials_learn_nothing_about_each_others_requests(
    api: httpx.AsyncClient,
) -> None:
    key = str(uuid.uuid4())

    def sign_up(name: str) -> dict[str, Any]:
        return {
            "name": f"{name} Ltd",
            "owner": {
                "name": name,
                "email": f"{name.lower()}-{uuid.uuid4().hex[:6]}@acme.example.com",
                "password": f"{name}'s long passphrase",
            },
        }

    first = await api.post("/accounts", headers={"Idempotency-Key": key}, json=sign_up("Ann"))
    assert first.status_code == 201, first.text
    other = await api.post("/accounts", headers={"Idempotency-Key": key}, json=sign_up("Ben"))
    assert other.status_code == 409, "not 422: that would say whether Ann's body matched"
    assert other.json()["type"].endswith("/request-completed")
