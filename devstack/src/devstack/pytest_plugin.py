"""Pytest fixtures for real servers: PostgreSQL, a Kafka-protocol broker and an SMTP server.

By default they are the embedded ones, started once per test session. External servers:
`QUITTANCE_TEST_POSTGRES_URL` (an admin libpq URL; tests create their own databases) and
`QUITTANCE_TEST_KAFKA_BOOTSTRAP`. `QUITTANCE_TEST_BACKEND=testcontainers` starts PostgreSQL and
Kafka containers instead, where a Docker engine exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack import conformance
from devstack.processes import free_port
from devstack.stack import SERVICES, Stack, StackPorts
from devstack.testing import MailCatcher


def pytest_addoption(parser: pytest.Parser) -> None:
    """The conformance report's option."""
    conformance.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Tests cite privacy clauses with a mark the register checks."""
    conformance.configure(config)


def _testcontainers() -> tuple[str, str, list[Any]]:
    # testcontainers 4.15 moved its modules under testcontainers.community.
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    postgres = PostgresContainer("postgres:17-alpine", driver=None).start()
    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft().start()
    return postgres.get_connection_url(), kafka.get_bootstrap_server(), [postgres, kafka]


# Joining a consumer group on Tansu waits half the session timeout (5 s by default): the
# suite starts dozens of consumers, so its sessions are shorter (a 3 s join).
FAST_GROUP_JOIN = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Stack]:
    """The servers every integration test uses, started once."""
    postgres_url = os.environ.get("QUITTANCE_TEST_POSTGRES_URL")
    kafka = os.environ.get("QUITTANCE_TEST_KAFKA_BOOTSTRAP")
    containers: list[Any] = []
    if os.environ.get("QUITTANCE_TEST_BACKEND") == "testcontainers":
        postgres_url, kafka, containers = _testcontainers()
    # Not under pytest's own temporary folder: another pytest session started meanwhile makes
    # that folder private again (mode 0700), and a server running as another user (Postgres,
    # when the suite runs as root) would lose its data folder mid-run.
    var_dir = Path(tempfile.mkdtemp(prefix="quittance-test-stack-"))
    stack = Stack(
        var_dir=var_dir,
        ports=StackPorts.free(),
        durable=False,
        postgres_admin_url=postgres_url,
        kafka_bootstrap=kafka,
        database_suffix=f"_{uuid.uuid4().hex[:8]}",
        service_ports={s.name: free_port() for s in SERVICES},
    )
    try:
        stack.start_infrastructure()
        yield stack
    finally:
        stack.stop_services()
        if postgres_url is not None:  # a server we do not own: leave it as we found it
            stack.drop_created_databases()
        stack.stop()
        for container in containers:
            container.stop()
        # The logs stay for a failed run to be read; the throwaway database goes.
        shutil.rmtree(var_dir / "postgres", ignore_errors=True)


@pytest.fixture(scope="session")
def mail(infrastructure: Stack) -> MailCatcher:
    """The SMTP server's received mail."""
    return MailCatcher(infrastructure.mail_url)


@pytest.fixture(scope="session")
def kafka_bootstrap(infrastructure: Stack) -> str:
    """The broker's bootstrap servers."""
    return infrastructure.bootstrap_servers


_migrated: dict[str, str] = {}


@pytest.fixture(scope="session")
def migrated_database(infrastructure: Stack) -> Any:
    """A function returning the URL of a service's test database, created and migrated once."""

    def create_and_migrate(service: str) -> str:
        name = f"{service}_it_{uuid.uuid4().hex[:8]}"
        infrastructure.create_databases([name], suffixed=False)
        url = infrastructure.database_url(service).rsplit("/", 1)[0] + f"/{name}"
        _run_migrations(service, url)
        return url

    def database(service: str) -> str:
        if service not in _migrated:
            # In a thread: callers may be inside a running event loop, and migrations run their own.
            with ThreadPoolExecutor(max_workers=1) as worker:
                _migrated[service] = worker.submit(create_and_migrate, service).result()
        return _migrated[service]

    return database


@pytest.fixture(scope="session")
def keystore_url(infrastructure: Stack) -> str:
    """The libpq URL of one key-store database that every service under test shares."""
    name = f"keystore_it_{uuid.uuid4().hex[:8]}"
    infrastructure.create_databases([name], suffixed=False)
    return infrastructure.admin_url().rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def keystore_settings(keystore_url: str) -> Any:
    """Key-store settings for services under test: the shared database, a test master key."""
    from pydantic import SecretStr

    from shared.settings import KeyStoreSettings

    return KeyStoreSettings(url=keystore_url, master_key=SecretStr("test-keystore-master-key"))


def _run_migrations(service: str, url: str) -> None:
    import importlib

    from shared.migrations import upgrade_database

    main = importlib.import_module(f"{service}.main")
    upgrade_database(Path(main.MIGRATIONS_DIR), url)


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace, so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(scope="module")
def module_topic_prefix() -> str:
    """A topic namespace for the tests of one module that share a running service."""
    return f"m{uuid.uuid4().hex[:10]}."


@pytest.fixture(scope="module")
def service_env(
    infrastructure: Stack,
    migrated_database: Any,
    module_topic_prefix: str,
    keystore_settings: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    """Settings keyword arguments that point a service at the test servers."""
    from shared.settings import KafkaSettings
    from shared.signing import SigningKey

    # Billing signs the tokens audit accepts: one pair for the session, each side its half.
    token_key = SigningKey.generate()
    secrets_of = {
        "billing": {"audit_token_signing_key": token_key.private_pem()},
        "audit": {
            "billing_token_public_key": token_key.public_pem().decode(),
            "reference_key": "test-audit-reference-key",
            "checkpoint_signing_key": SigningKey.generate().private_pem(),
        },
    }

    def kwargs(service: str) -> dict[str, Any]:
        return {
            "operator_token": f"test-{service}-operator-token",
            **secrets_of.get(service, {}),
            "environment": "test",
            "database_url": migrated_database(service),
            "kafka": KafkaSettings(
                bootstrap_servers=infrastructure.bootstrap_servers,
                topic_prefix=module_topic_prefix,
                retry_backoff_s=0.05,
                **FAST_GROUP_JOIN,
            ),
            "export_store_path": tmp_path_factory.mktemp(f"{service}-exports"),
            "keystore": keystore_settings,
        }

    return kwargs
