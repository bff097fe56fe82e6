"""Settings every service shares: where Postgres, Kafka and the collector are, and the run mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The embedded stack (`make up`) listens here; unset settings point at it.
EMBEDDED_POSTGRES_PORT = 55432
EMBEDDED_KAFKA_PORT = 19092
EMBEDDED_SMTP_PORT = 2525
EMBEDDED_MAIL_WEB_PORT = 8025

DEVELOPMENT_SECRET_PREFIX = "dev-only-"  # noqa: S105 - the marker of defaults to refuse


def embedded_database_url(database: str) -> str:
    """Return the asyncpg URL of a database on the embedded PostgreSQL server."""
    return f"postgresql+asyncpg://postgres@127.0.0.1:{EMBEDDED_POSTGRES_PORT}/{database}"


class TlsSettings(BaseModel):
    """The certificate a service serves HTTPS with; unset: plain HTTP (development)."""

    certfile: Path | None = Field(default=None, description="Serve HTTPS with this PEM chain.")
    keyfile: Path | None = Field(default=None, description="The PEM key of certfile.")

    @property
    def enabled(self) -> bool:
        """Whether the service serves HTTPS."""
        return self.certfile is not None

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsSettings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile are set together")
        return self


class KafkaSettings(BaseModel):
    """How a service reaches the Kafka-protocol broker."""

    bootstrap_servers: str = Field(
        default=f"127.0.0.1:{EMBEDDED_KAFKA_PORT}", description="host:port[,host:port]"
    )
    topic_prefix: str = Field(
        default="", description="Prepended to every topic name; tests use it to isolate runs."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="SSL or SASL_SSL in production (TLS clause)."
    )
    ssl_cafile: Path | None = Field(default=None, description="CA bundle for broker TLS.")
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="How the service signs in to the broker (SASL_SSL)."
    )
    sasl_username: str | None = Field(default=None, description="The service's broker user.")
    sasl_password: SecretStr | None = Field(default=None, description="Its password.")
    partitions: int = Field(
        default=3, ge=1, description="Partitions for topics this stack creates."
    )
    fetch_max_wait_ms: int = Field(
        default=50, ge=1, le=5000, description="How long a consumer's fetch waits for records."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Handler attempts before a message is dead-lettered."
    )
    retry_backoff_s: float = Field(default=0.2, ge=0, description="First retry delay, doubled.")
    session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="A consumer silent this long leaves its group. Joining a group waits half of "
        "it on Tansu, so test runs that start many consumers shorten it.",
    )
    heartbeat_interval_ms: int = Field(
        default=3_000, ge=100, description="How often a consumer tells its group it is alive."
    )
    max_message_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Largest record the broker accepts (Kafka's message.max.bytes); larger "
        "events are refused when added to the outbox, and the producer refuses them too.",
    )

    def topic(self, name: str) -> str:
        """Return the physical topic name for a logical one."""
        return f"{self.topic_prefix}{name}"

    def sasl_credentials(self) -> tuple[str, str]:
        """The broker user and password (SASL_SSL)."""
        if self.sasl_username is None or self.sasl_password is None:
            raise ValueError("no SASL credentials: the security protocol is not SASL_SSL")
        return self.sasl_username, self.sasl_password.get_secret_value()

    @model_validator(mode="after")
    def _credentials_with_sasl_only(self) -> KafkaSettings:
        signs_in = self.sasl_username is not None or self.sasl_password is not None
        if self.security_protocol == "SASL_SSL" and not (self.sasl_username and self.sasl_password):
            raise ValueError("SASL_SSL needs sasl_username and sasl_password")
        if self.security_protocol != "SASL_SSL" and signs_in:
            raise ValueError("sasl_username and sasl_password are for SASL_SSL only")
        return self


class KeyStoreSettings(BaseModel):
    """Where the per-account event keys live (TERMINATION): one key store for all services."""

    backend: Literal["postgres", "vault"] = Field(
        default="postgres",
        description="Who wraps the stored keys: the master key below, or Vault Transit.",
    )
    url: str = Field(
        default=embedded_database_url("keystore").replace("+asyncpg", "", 1),
        description="libpq URL of the key-store database, shared by every service.",
    )
    master_key: SecretStr | None = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}keystore-master-key"),
        description=(
            "Wraps the stored keys with the postgres backend; used as is when exactly 32 "
            "bytes (UTF-8), otherwise stretched to 32 bytes with HKDF-SHA256. Unused with vault."
        ),
    )
    vault_url: str | None = Field(
        default=None, description="Vault address, e.g. https://vault:8200"
    )
    vault_token: SecretStr | None = Field(default=None, description="Vault token for Transit.")
    vault_mount: str = Field(default="transit", description="Mount path of the Transit engine.")
    cache_ttl_s: float = Field(
        default=60, ge=0, description="How long a service keeps a key in memory after a read."
    )

    @model_validator(mode="after")
    def _backend_has_what_it_needs(self) -> KeyStoreSettings:
        if self.backend == "vault":
            if not self.vault_url or self.vault_token is None:
                raise ValueError("the vault backend needs vault_url and vault_token")
            self.master_key = None  # not used, so not kept, and its default is not refused
        elif self.master_key is None:
            raise ValueError("the postgres backend needs master_key")
        return self


class ExportStoreSettings(BaseModel):
    """Where a service keeps its export files: its folder, or an S3-compatible bucket if set."""

    s3_bucket: str | None = Field(
        default=None,
        description="Bucket of this service's export store; unset: the folder export_store_path.",
    )
    s3_prefix: str | None = Field(
        default=None,
        description="Key prefix inside the bucket; unset: the service's name, so services "
        "sharing a bucket never share objects. Empty: the whole bucket (one per service).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="URL of an S3-compatible server (MinIO, Ceph, ...), addressed path-style; "
        "unset: AWS S3.",
    )
    s3_region: str | None = Field(default=None, description="Region; unset: boto3's default.")
    s3_access_key_id: str | None = Field(
        default=None, description="Access key id; unset: boto3's credential chain (env, role)."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key, with s3_access_key_id."
    )

    @model_validator(mode="after")
    def _keys_come_in_pairs(self) -> ExportStoreSettings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("s3_access_key_id and s3_secret_access_key are set together")
        return self


def development_secrets(model: BaseModel, prefix: str = "") -> Iterator[str]:
    """Yield the dotted names of secrets, nested models included, still at a development default."""
    for name, value in model:
        if isinstance(value, SecretStr) and value.get_secret_value().startswith(
            DEVELOPMENT_SECRET_PREFIX
        ):
            yield f"{prefix}{name}"
        elif isinstance(value, BaseModel):
            yield from development_secrets(value, f"{prefix}{name}.")


def refuse_development_secrets(model: BaseModel, environment: str) -> None:
    """Outside development, raise if any secret is still at its development default."""
    if environment == "development":
        return
    defaults = list(development_secrets(model))
    if defaults:
        raise ValueError(f"still at their development default: {', '.join(defaults)}")


class ServiceSettings(BaseSettings):
    """The settings common to the four services; each subclass sets its env prefix."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        default="development", description="Development defaults are refused in production."
    )
    database_url: str = Field(description="SQLAlchemy URL of this service's own database.")
    database_pool_size: int = Field(default=10, ge=1, description="Connections kept open.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    tls: TlsSettings = Field(
        default_factory=TlsSettings, description="HTTPS for the service's API (TLS)."
    )
    keystore: KeyStoreSettings = Field(default_factory=KeyStoreSettings)
    export_store_path: Path | None = Field(
        default=None,
        description="This service's own export store; unset: var/exports/<service>.",
    )
    export_store: ExportStoreSettings = Field(
        default_factory=ExportStoreSettings,
        description="An S3-compatible export store instead of the folder, when a bucket is set.",
    )
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint for traces; unset keeps traces in-process."
    )
    operator_token: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}operator-token"),
        description="Bearer token of the operators (the ops dashboard): dead letters and their "
        "redrive, and the service's own operator routes.",
    )
    tracing: bool = Field(
        default=True,
        description="Record spans; off only to measure what tracing costs (make bench).",
    )
    log_level: str = Field(default="INFO", description="Root log level.")
    relay_batch_size: int = Field(default=500, ge=1, description="Outbox rows sent per batch.")
    relay_poll_interval_s: float = Field(
        default=0.25, ge=0.01, description="Outbox poll when nothing woke the relay."
    )
    inbox_retention_s: float = Field(
        default=14 * 24 * 3600,
        gt=0,
        description="How long a handled event id is remembered; longer than topic retention.",
    )
    housekeeping_interval_s: float = Field(
        default=3600, gt=0, description="How often the inbox (and other windows) are pruned."
    )
    relay_replay_window_s: float = Field(
        default=900.0,
        ge=0,
        description="How long acknowledged outbox rows are kept, to be published again if the "
        "broker forgets them (a restarted in-memory broker, a lost topic).",
    )
    relay_broker_check_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the leading relay checks that the broker still holds what it "
        "acknowledged (also checked after every failed batch).",
    )

    @model_validator(mode="after")
    def _refuse_development_secrets_outside_development(self) -> ServiceSettings:
        refuse_development_secrets(self, self.environment)
        return self

    @model_validator(mode="after")
    def _refuse_plaintext_in_production(self) -> ServiceSettings:
        plaintext = plaintext_connections(self)
        if self.environment == "production" and plaintext:
            raise ValueError(f"plaintext connections are refused in production: {plaintext}")
        return self


def verifies_server(url: str) -> bool:
    """Whether a PostgreSQL URL asks for TLS with the server's certificate and name checked."""
    query = parse_qs(urlsplit(url).query)
    modes = query.get("ssl", []) + query.get("sslmode", [])
    return modes == ["verify-full"]


def plaintext_connections(settings: ServiceSettings) -> str:
    """The service's connections that would carry personal data without TLS (TLS), named."""
    plaintext = []
    if settings.kafka.security_protocol == "PLAINTEXT":
        plaintext.append("kafka.security_protocol is PLAINTEXT (SSL or SASL_SSL)")
    if not verifies_server(settings.database_url):
        plaintext.append("database_url lacks ssl=verify-full")
    if settings.keystore.backend == "postgres" and not verifies_server(settings.keystore.url):
        plaintext.append("keystore.url lacks sslmode=verify-full")
    return "; ".join(plaintext)
