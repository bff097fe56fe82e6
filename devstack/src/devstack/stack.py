"""The whole system on one machine: infrastructure, migrations, and the four services."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import asyncpg
import httpx

from devstack.broker import EmbeddedBroker
from devstack.postgres import EmbeddedPostgres
from devstack.processes import ManagedProcess, free_port, port_is_open, wait_until
from shared.contracts import TOPICS
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings

# Who signs in to the ops dashboard that `make up` starts (billing's staff, role
# billing-operations); the password is made for each run.
OPERATIONS_STAFF_NAME = "Olive Operations"
OPERATIONS_STAFF_EMAIL = "operations@quittance.example.com"


@dataclass(frozen=True)
class ServiceSpec:
    """One of the four services: its package name and default port."""

    name: str
    port: int


SERVICES = (
    ServiceSpec("billing", 8000),
    ServiceSpec("notifications", 8001),
    ServiceSpec("retention", 8002),
    ServiceSpec("audit", 8003),
)


@dataclass(frozen=True)
class LocalAuthority:
    """A certificate authority made for one run of the stack, and the certificate (for
    127.0.0.1 and localhost) that every server of the run serves; its CA file is what a
    browser or client is told to trust."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        """The authority's certificate (PEM)."""
        return self.folder / "ca.pem"

    @property
    def server_file(self) -> Path:
        """The servers' private key and certificate chain (PEM, readable by the owner only)."""
        return self.folder / "server.pem"

    @classmethod
    def create(cls, folder: Path) -> LocalAuthority:
        """Make the authority and the servers' certificate, or keep those of an earlier run."""
        authority = cls(folder)
        if authority.ca_file.exists() and authority.server_file.exists():
            return authority
        import trustme

        folder.mkdir(parents=True, exist_ok=True)
        made = trustme.CA(organization_name="Quittance development")
        made.cert_pem.write_to_path(str(authority.ca_file))
        served = made.issue_cert("127.0.0.1", "localhost")
        served.private_key_and_cert_chain_pem.write_to_path(str(authority.server_file))
        authority.server_file.chmod(0o600)
        return authority


@dataclass
class StackPorts:
    """Where the embedded infrastructure listens."""

    postgres: int = 55432
    kafka: int = 19092
    smtp: int = 2525
    mail_web: int = 8025
    payment_gateway: int = 8010
    dashboard: int = 8004

    @classmethod
    def free(cls) -> StackPorts:
        """Ports nothing listens on now: a stack beside another (tests, benchmarks, chaos)."""
        return cls(*(free_port() for _ in fields(cls)))


@dataclass
class Stack:
    """Starts and stops everything; `var_dir` holds data, logs, mail and exports."""

    var_dir: Path
    ports: StackPorts = field(default_factory=StackPorts)
    durable: bool = True
    topic_prefix: str = ""
    database_suffix: str = ""
    postgres_admin_url: str | None = None  # an external server instead of the embedded one
    kafka_bootstrap: str | None = None  # an external broker instead of the embedded one
    # The embedded broker keeps its topics in an S3 store on loopback (it survives kill -9)
    # instead of in memory.
    durable_broker: bool = False
    service_ports: dict[str, int] = field(
        default_factory=lambda: {s.name: s.port for s in SERVICES}
    )
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    mailcatcher: ManagedProcess | None = None
    payment_gateway: ManagedProcess | None = None
    # The sandbox gateway's secrets, fresh for each run: billing is given them, nobody else.
    gateway_api_key: str = field(default_factory=lambda: f"sk_sandbox_{secrets.token_hex(16)}")
    gateway_webhook_secret: str = field(
        default_factory=lambda: f"whsec_{secrets.token_hex(24)}", repr=False
    )
    services: dict[str, ManagedProcess] = field(default_factory=dict)
    dashboard: ManagedProcess | None = None
    # Extra environment per service, on top of service_env (a test's shorter grace period).
    service_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    # The operations staff member's password, fresh for each run and printed by `make up`.
    dashboard_password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    created_databases: list[str] = field(default_factory=list)
    # HTTPS for the services and the dashboard, with a certificate authority made for the run.
    tls: bool = False

    @property
    def log_dir(self) -> Path:
        """Where every process writes its log."""
        return self.var_dir / "logs"

    @property
    def export_dir(self) -> Path:
        """Where each service has its own export store (a folder per service, none shared)."""
        return self.var_dir / "exports"

    @property
    def mail_dir(self) -> Path:
        """Where the mail catcher keeps messages."""
        return self.var_dir / "mail"

    @property
    def bootstrap_servers(self) -> str:
        """The broker clients connect to."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.ports.kafka}"

    @property
    def mail_url(self) -> str:
        """The web inbox."""
        return f"http://127.0.0.1:{self.ports.mail_web}"

    @property
    def payment_gateway_url(self) -> str:
        """The sandbox payment gateway: its API and the payer's page."""
        return f"http://127.0.0.1:{self.ports.payment_gateway}"

    def admin_url(self) -> str:
        """A libpq URL for creating databases."""
        if self.postgres_admin_url:
            return self.postgres_admin_url
        assert self.postgres is not None
        return self.postgres.url("postgres", driver="postgresql")

    def database_url(self, service: str) -> str:
        """The asyncpg URL of a service's own database."""
        base = (
            self.admin_url().rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        )
        return f"{base}/{service}{self.database_suffix}"

    def keystore_url(self) -> str:
        """The libpq URL of the key-store database every service shares (TERMINATION)."""
        return f"{self.admin_url().rsplit('/', 1)[0]}/keystore{self.database_suffix}"

    @property
    def scheme(self) -> str:
        """https in TLS mode, http otherwise."""
        return "https" if self.tls else "http"

    @functools.cached_property
    def authority(self) -> LocalAuthority:
        """The run's certificate authority and the certificate every server serves."""
        return LocalAuthority.create(self.var_dir / "tls")

    def verify(self) -> ssl.SSLContext | bool:
        """What a client of this stack's servers trusts: the run's authority in TLS mode."""
        return ssl.create_default_context(cafile=str(self.authority.ca_file)) if self.tls else True

    def tls_env(self, prefix: str) -> dict[str, str]:
        """A server's certificate (TLS mode)."""
        if not self.tls:
            return {}
        return {
            f"{prefix}TLS__CERTFILE": str(self.authority.server_file),
            f"{prefix}TLS__KEYFILE": str(self.authority.server_file),
        }

    def service_url(self, service: str) -> str:
        """Where a service's HTTP server answers."""
        return f"{self.scheme}://127.0.0.1:{self.service_ports[service]}"

    # infrastructure

    def start_infrastructure(self) -> None:
        """Start PostgreSQL, the broker and the mail catcher (those not given from outside)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.postgres_admin_url is None:
            _require_free(self.ports.postgres, "PostgreSQL")
            self.postgres = EmbeddedPostgres(
                self.var_dir / "postgres",
                port=self.ports.postgres,
                log_dir=self.log_dir,
                durable=self.durable,
            )
            self.postgres.start()
        if self.kafka_bootstrap is None:
            _require_free(self.ports.kafka, "the Kafka broker")
            self.broker = EmbeddedBroker(
                port=self.ports.kafka, log_dir=self.log_dir, durable=self.durable_broker
            )
            self.broker.start()
        _require_free(self.ports.smtp, "SMTP")
        _require_free(self.ports.mail_web, "the web inbox")
        self.mailcatcher = ManagedProcess(
            "mailcatcher",
            [
                sys.executable,
                "-m",
                "devstack.mailcatcher",
                "--smtp-port",
                str(self.ports.smtp),
                "--http-port",
                str(self.ports.mail_web),
                "--store",
                str(self.mail_dir),
            ],
            log_path=self.log_dir / "mailcatcher.log",
        )
        self.mailcatcher.start()
        self.payment_gateway = start_payment_gateway(
            port=self.ports.payment_gateway,
            webhook_url=f"{self.service_url('billing')}/payments/webhooks/sandbox",
            api_key=self.gateway_api_key,
            webhook_secret=self.gateway_webhook_secret,
            log_path=self.log_dir / "payment-gateway.log",
            wait=False,
        )
        wait_until(
            lambda: (
                port_is_open(self.ports.smtp)
                and port_is_open(self.ports.mail_web)
                and port_is_open(self.ports.payment_gateway)
            ),
            timeout=30,
            what="the mail catcher and the payment gateway",
        )

    def create_databases(self, names: Iterable[str], *, suffixed: bool = True) -> list[str]:
        """Create databases that do not exist yet; returns their full names."""
        full = [f"{n}{self.database_suffix}" if suffixed else n for n in names]
        asyncio.run(create_databases(self.admin_url(), full))
        self.created_databases.extend(n for n in full if n not in self.created_databases)
        return full

    def drop_created_databases(self) -> None:
        """Drop every database this stack created (on a server it does not own)."""
        if self.created_databases:
            asyncio.run(drop_databases(self.admin_url(), self.created_databases))
            self.created_databases.clear()

    # services

    def service_env(self, service: str) -> dict[str, str]:
        """The environment that points a service at this stack."""
        prefix = f"{service.upper()}_"
        env = {
            f"{prefix}ENVIRONMENT": "development",
            f"{prefix}DATABASE_URL": self.database_url(service),
            f"{prefix}KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers,
            f"{prefix}KAFKA__TOPIC_PREFIX": self.topic_prefix,
            f"{prefix}KEYSTORE__URL": self.keystore_url(),
            f"{prefix}EXPORT_STORE_PATH": str((self.export_dir / service).resolve()),
            f"{prefix}LOG_LEVEL": "INFO",
        }
        if service == "billing":
            env[f"{prefix}PAYMENTS__GATEWAY"] = "sandbox"
            env[f"{prefix}PAYMENTS__SANDBOX_URL"] = self.payment_gateway_url
            env[f"{prefix}PAYMENTS__API_KEY"] = self.gateway_api_key
            env[f"{prefix}PAYMENTS__WEBHOOK_SECRET"] = self.gateway_webhook_secret
            env[f"{prefix}PAYMENTS__RETURN_URL"] = f"{self.service_url('billing')}/payments/done"
            # On one machine the endpoints a developer registers are local: allowed here only.
            env[f"{prefix}WEBHOOKS__ALLOW_PRIVATE_ADDRESSES"] = "true"
            env[f"{prefix}WEBHOOKS__ALLOW_HTTP"] = "true"
        if service == "retention":
            env[f"{prefix}PUBLIC_URL"] = self.service_url("retention")
        if service == "notifications":
            env[f"{prefix}SMTP__HOST"] = "127.0.0.1"
            env[f"{prefix}SMTP__PORT"] = str(self.ports.smtp)
        return {**env, **self.tls_env(prefix), **self.service_overrides.get(service, {})}

    @property
    def dashboard_url(self) -> str:
        """The ops dashboard."""
        return f"{self.scheme}://127.0.0.1:{self.ports.dashboard}"

    def dashboard_env(self) -> dict[str, str]:
        """The environment that points the dashboard at this stack's services."""
        return {
            "OPS_ENVIRONMENT": "development",
            "OPS_SERVICES": json.dumps({s: self.service_url(s) for s in self.service_ports}),
            "OPS_SESSION_KEY": secrets.token_hex(32),
            "OPS_LOG_LEVEL": "INFO",
            "OPS_SECURE_COOKIE": "true" if self.tls else "false",
            **self.tls_env("OPS_"),
            # The dashboard reads the services over HTTPS: it trusts the run's authority.
            **({"SSL_CERT_FILE": str(self.authority.ca_file)} if self.tls else {}),
        }

    def enrol_operations_staff(self) -> str:
        """Make the operations staff member who signs in to the dashboard, with billing's
        server command as an operator would (on a later run, the same member re-enrolled),
        and choose this run's password with the enrolment code; their email."""
        made = subprocess.run(
            [
                sys.executable,
                *("-m", "billing.main", "staff-member", "--name", OPERATIONS_STAFF_NAME),
                *("--email", OPERATIONS_STAFF_EMAIL, "--role", "billing-operations"),
            ],
            env={**os.environ, **self.service_env("billing")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"billing's staff-member command failed: {made.stderr[-2000:]}")
        marker = "enrolment code (shown once): "
        if marker not in made.stdout:
            raise RuntimeError(f"billing's staff-member command printed no code: {made.stdout}")
        code = made.stdout.split(marker)[1].strip()
        enrolled = httpx.post(
            f"{self.service_url('billing')}/staff/enrolment",
            json={
                "email": OPERATIONS_STAFF_EMAIL,
                "code": code,
                "password": self.dashboard_password,
            },
            timeout=30,
            verify=self.verify(),
        )
        enrolled.raise_for_status()
        return OPERATIONS_STAFF_EMAIL

    def start_dashboard(self) -> ManagedProcess:
        """Start the ops dashboard (it reads the services over HTTP) and wait for it."""
        _require_free(self.ports.dashboard, "the ops dashboard")
        self.dashboard = ManagedProcess(
            "ops",
            [
                sys.executable,
                *("-m", "ops.main", "serve", "--host", "127.0.0.1"),
                *("--port", str(self.ports.dashboard)),
            ],
            log_path=self.log_dir / "ops.log",
            env=self.dashboard_env(),
        )
        self.dashboard.start()
        wait_until(lambda: port_is_open(self.ports.dashboard), timeout=30, what="the dashboard")
        return self.dashboard

    def stop_dashboard(self) -> None:
        """Stop the ops dashboard if it runs."""
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None

    def migrate(self, service: str) -> None:
        """Run a service's migrations the way production does: its own command, its own env."""
        result = subprocess.run(
            [sys.executable, "-m", f"{service}.main", "migrate"],
            env={**os.environ, **self.service_env(service)},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{service} migrations failed:\n{result.stdout}\n{result.stderr}")

    def start_service(self, service: str, *, wait: bool = True, workers: int = 1) -> ManagedProcess:
        """Start one service with its own `serve` command (N worker processes) and wait for its
        /healthz."""
        port = self.service_ports[service]
        _require_free(port, service)
        process = ManagedProcess(
            service,
            [
                sys.executable,
                *("-m", f"{service}.main", "serve", "--host", "127.0.0.1", "--port", str(port)),
                *("--workers", str(workers)),
            ],
            log_path=self.log_dir / f"{service}.log",
            env=self.service_env(service),
        )
        process.start()
        self.services[service] = process
        if wait:
            self.wait_healthy(service)
        return process

    def wait_healthy(self, service: str, timeout: float = 60) -> None:
        """Wait until a service answers 200 on /healthz."""
        process = self.services[service]

        def healthy() -> bool:
            if not process.alive():
                raise RuntimeError(f"{service} exited:\n{process.tail()}")
            try:
                return (
                    httpx.get(
                        f"{self.service_url(service)}/healthz", timeout=2, verify=self.verify()
                    ).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=timeout, what=service)

    def create_topics(self) -> None:
        """Create every topic of the catalogue and its dead-letter topic."""
        kafka = KafkaSettings(
            bootstrap_servers=self.bootstrap_servers, topic_prefix=self.topic_prefix
        )
        asyncio.run(ensure_topics(kafka, [topic.name for topic in TOPICS]))

    def start_services(self, workers: int = 1) -> None:
        """Create topics and databases, migrate, and start the four services (each as N worker
        processes: instances of the service in one consumer group)."""
        self.create_topics()
        self.create_databases(s.name for s in SERVICES)
        self.create_databases(["keystore"])
        # Each service migrates its own database: side by side, as separate deployments would.
        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            list(pool.map(self.migrate, [spec.name for spec in SERVICES]))
        for spec in SERVICES:
            self.start_service(spec.name, wait=False, workers=workers)
        for spec in SERVICES:
            self.wait_healthy(spec.name)

    def stop_services(self) -> None:
        """Stop the four services, leaving the infrastructure running."""
        for process in reversed(list(self.services.values())):
            process.stop()
        self.services.clear()

    def stop(self) -> None:
        """Stop the dashboard and the services, then the infrastructure."""
        self.stop_dashboard()
        self.stop_services()
        if self.payment_gateway is not None:
            self.payment_gateway.stop()
        if self.mailcatcher is not None:
            self.mailcatcher.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def start_payment_gateway(
    *,
    port: int,
    webhook_url: str,
    api_key: str,
    webhook_secret: str,
    log_path: Path,
    wait: bool = True,
) -> ManagedProcess:
    """The sandbox payment gateway as its own process, sending its webhooks to webhook_url."""
    _require_free(port, "the payment gateway")
    process = ManagedProcess(
        "payment-gateway",
        [
            sys.executable,
            "-m",
            "devstack.payment_sandbox",
            "--port",
            str(port),
            "--webhook-url",
            webhook_url,
        ],
        log_path=log_path,
        env={"PAYMENT_SANDBOX_API_KEY": api_key, "PAYMENT_SANDBOX_WEBHOOK_SECRET": webhook_secret},
    )
    process.start()
    if wait:
        wait_until(lambda: port_is_open(port), timeout=30, what="the payment gateway")
    return process


async def create_databases(admin_url: str, names: Iterable[str]) -> None:
    """CREATE DATABASE for each name not yet on the server."""
    connection = await asyncpg.connect(admin_url)
    try:
        existing = {r["datname"] for r in await connection.fetch("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_databases(admin_url: str, names: Iterable[str]) -> None:
    """DROP DATABASE each name, closing its connections first."""
    connection = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def _require_free(port: int, what: str) -> None:
    if port_is_open(port):
        raise RuntimeError(f"port {port} for {what} is already in use; stop what holds it")
