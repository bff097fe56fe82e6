"""LEAST-ACCESS: an optional second factor: TOTP codes, used once each, and single-use recovery
codes; sensitive changes re-authenticate with it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest

from billing.settings import BillingSettings

pytestmark = [pytest.mark.integration, pytest.mark.clause("LEAST-ACCESS")]
PASSWORD = "a second factor's first factor"


async def _enrolled(api: httpx.AsyncClient) -> tuple[dict[str, Any], pyotp.TOTP, list[str]]:
    email = f"two-{uuid.uuid4().hex[:8]}@factor.example"
    opened = await api.post(
        "/accounts",
        json={"name": "Two Ltd", "owner": {"name": "Tia", "email": email, "password": PASSWORD}},
    )
    account: dict[str, Any] = opened.json()
    account["email"] = email
    key = {"Authorization": f"Bearer {account['api_key']}"}
    account["headers"] = key
    started = await api.post("/users/me/totp", headers=key)
    assert started.status_code == 201, started.text
    assert started.json()["otpauth_uri"].startswith("otpauth://totp/Quittance:")
    totp = pyotp.TOTP(started.json()["secret"])
    wrong = await api.post("/users/me/totp/confirm", headers=key, json={"code": "000000"})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "code"
    account["confirmed_at"] = datetime.now(UTC)
    account["confirming_code"] = totp.at(account["confirmed_at"])
    confirmed = await api.post(
        "/users/me/totp/confirm", headers=key, json={"code": account["confirming_code"]}
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(set(codes)) == 10
    return account, totp, codes


async def _sign_in(api: httpx.AsyncClient, email: str, **factor: str) -> httpx.Response:
    response = await api.post("/sessions", json={"email": email, "password": PASSWORD, **factor})
    api.cookies.clear()
    return response


async def test_with_a_second_factor_the_password_alone_is_not_enough_and_a_code_works_once(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> None:
    account, totp, _ = await _enrolled(api)
    alone = await _sign_in(api, account["email"])
    assert alone.status_code == 401
    assert alone.json()["errors"][0]["field"] == "code"
    assert (await _sign_in(api, account["email"], code="123456")).status_code == 401
    spent = await _sign_in(api, account["email"], code=account["confirming_code"])
    assert spent.status_code == 401, "the code that confirmed the set-up is spent"
    code = totp.at(account["confirmed_at"] + timedelta(seconds=totp.interval))  # the next one
    assert (await _sign_in(api, account["email"], code=code)).status_code == 201
    assert (await _sign_in(api, account["email"], code=code)).status_code == 401, "no replay"
    connection = await asyncpg.connect(billing_settings.database_url.replace("+asyncpg", ""))
    try:
        stored = await connection.fetchval(
            "SELECT totp_secret FROM app_user WHERE email = $1", account["email"]
        )
    finally:
        await connection.close()
    assert stored.startswith("enc:v1:"), "sealed with the account's key"
    assert totp.secret not in stored


async def test_a_recovery_code_stands_in_once_and_turning_the_factor_off_needs_the_password(
    api: httpx.AsyncClient,
) -> None:
    account, _, codes = await _enrolled(api)
    assert (await _sign_in(api, account["email"], recovery_code=codes[0])).status_code == 201
    again = await _sign_in(api, account["email"], recovery_code=codes[0])
    assert again.status_code == 401
    assert again.json()["errors"][0]["field"] == "recovery_code"
    refused = await api.post(
        "/users/me/totp/disable", headers=account["headers"], json={"password": "not it at all"}
    )
    assert refused.status_code == 403
    off = await api.post(
        "/users/me/totp/disable", headers=account["headers"], json={"password": PASSWORD}
    )
    assert off.status_code == 204
    assert (await _sign_in(api, account["email"])).status_code == 201
    assert (await _sign_in(api, account["email"], recovery_code=codes[1])).status_code == 201, (
        "a sign-in without a second factor ignores the codes of one turned off"
    )


async def test_terminating_with_a_second_factor_needs_a_fresh_code_too(
    api: httpx.AsyncClient,
) -> None:
    account, totp, _ = await _enrolled(api)
    without = await api.post(
        "/account/termination", headers=account["headers"], json={"password": PASSWORD}
    )
    assert without.status_code == 403
    assert without.json()["errors"][0]["field"] == "code"
    code = totp.at(account["confirmed_at"] + timedelta(seconds=totp.interval))
    confirmed = await api.post(
        "/account/termination",
        headers=account["headers"],
        json={"password": PASSWORD, "code": code},
    )
    assert confirmed.status_code == 202, confirmed.text
