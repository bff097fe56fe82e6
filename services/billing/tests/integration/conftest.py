"""Billing running in-process against the real PostgreSQL and broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from billing.main import add_security_admin, create_app
from billing.settings import BillingSettings
from devstack.processes import free_port
from devstack.pytest_plugin import FAST_GROUP_JOIN
from devstack.testing import enrol_staff, running, served
from shared.settings import KafkaSettings, KeyStoreSettings
from shared.signing import SigningKey

AUDIT_TOKEN_KEY = SigningKey.generate()  # billing signs tokens for audit with it
OWNER_PASSWORD = "the account owner's passphrase"


@pytest.fixture(scope="session")
def billing_database(migrated_database: Callable[[str], str]) -> str:
    return migrated_database("billing")


@pytest.fixture(scope="module")
def billing_settings(
    billing_database: str,
    kafka_bootstrap: str,
    keystore_settings: KeyStoreSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> BillingSettings:
    return BillingSettings(
        environment="test",
        database_url=billing_database,
        operator_token="test-billing-operator-token",  # type: ignore[arg-type]
        kafka=KafkaSettings(
            bootstrap_servers=kafka_bootstrap,
            topic_prefix=f"b{uuid.uuid4().hex[:8]}.",
            **FAST_GROUP_JOIN,
        ),
        export_store_path=tmp_path_factory.mktemp("exports"),
        # Every test signs in from one address, the fuzzer's wrong passwords too: the per-address
        # throttle has its own test, from an address of its own.
        sign_in_failures_per_address=100_000,
        keystore=keystore_settings,
        audit_token_signing_key=AUDIT_TOKEN_KEY.private_pem(),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
async def api(billing_settings: BillingSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(billing_settings), base_url="http://billing") as client:
        yield client


@pytest.fixture(scope="module")
async def security_admin(
    api: httpx.AsyncClient, billing_settings: BillingSettings
) -> dict[str, str]:
    """A security admin made as on a server (the CLI's function), enrolled and signed in."""
    email = f"sec-{uuid.uuid4().hex[:8]}@quittance.example.com"
    _, code = await add_security_admin(billing_settings, name="Sasha Secure", email=email)
    return await enrol_staff(api, email=email, code=code)


@pytest.fixture
async def account(api: httpx.AsyncClient) -> dict[str, Any]:
    """A fresh account with its owner's credentials."""
    suffix = uuid.uuid4().hex[:6]
    response = await api.post(
        "/accounts",
        json={
            "name": f"Acme {suffix}",
            "owner": {
                "name": "Ada Owner",
                "email": f"ada-{suffix}@acme.example.com",
                "password": OWNER_PASSWORD,
            },
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    body["headers"] = {"Authorization": f"Bearer {body['api_key']}"}
    body["password"] = OWNER_PASSWORD
    return body


@pytest.fixture
async def customer(api: httpx.AsyncClient, account: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(
        "/customers",
        headers=account["headers"],
        json={"name": "Bob Buyer", "email": "bob@buyer.example.com"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def billing_url(billing_settings: BillingSettings) -> Iterator[str]:
    """Billing served by uvicorn on a free port."""
    with served(create_app(billing_settings), free_port()) as url:
        yield url
