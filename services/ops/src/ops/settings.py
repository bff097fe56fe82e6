"""Ops settings: `OPS_` environment variables, nested with `__`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import DEVELOPMENT_SECRET_PREFIX, TlsSettings, refuse_development_secrets

DEFAULT_SERVICES = {
    "billing": "http://127.0.0.1:8000",
    "notifications": "http://127.0.0.1:8001",
    "retention": "http://127.0.0.1:8002",
    "audit": "http://127.0.0.1:8003",
}


class OpsSettings(BaseSettings):
    """Where the services answer, the staff tokens the dashboard reads them with, and sign-in."""

    model_config = SettingsConfigDict(env_prefix="OPS_", env_nested_delimiter="__", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        default="development", description="Development defaults are refused in production."
    )
    services: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_SERVICES),
        description="Each service's base URL (JSON); the dashboard reads its /healthz, /metrics "
        "and staff APIs, never its database.",
    )
    billing_operator_token: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}operator-token"),
        description="Billing's operator token: its dead letters and their redrive.",
    )
    notifications_operator_token: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}operator-token"),
        description="Notifications' operator token: its dead letters and their redrive.",
    )
    retention_operator_token: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}operator-token"),
        description="Retention's operator token: sagas, dead letters and their redrive.",
    )
    audit_operator_token: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}audit-operator-token"),
        description="Audit's operator token: alerts, dead letters and their redrive.",
    )
    operations_roles: list[str] = Field(
        default_factory=lambda: ["billing-operations"],
        description="The staff roles (billing's) that may sign in to the dashboard.",
    )
    staff_check_interval_s: float = Field(
        default=60,
        gt=0,
        description="How often a signed-in operator's billing session is checked: a removed "
        "staff member or a lost role is out within this time.",
    )
    staff_check_grace_s: float = Field(
        default=900,
        gt=0,
        description="While billing cannot answer, how long after its last confirmation an "
        "operator may still watch (never change anything).",
    )
    session_key: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}ops-session-key"),
        description="Signs the dashboard's session cookie (HMAC).",
    )
    session_hours: float = Field(
        default=8, gt=0, le=24, description="How long a sign-in lasts (a working shift)."
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings, description="HTTPS for the dashboard (TLS)."
    )
    secure_cookie: bool = Field(
        default=False,
        description="Mark the session cookie Secure (set it when served over HTTPS).",
    )
    sign_in_failures_per_minute: int = Field(
        default=5,
        ge=1,
        description="Wrong passwords accepted from one address in a minute before refusing it.",
    )
    poll_interval_s: float = Field(
        default=2, gt=0, description="How often the services are read (the page's refresh)."
    )
    history_points: int = Field(
        default=150, ge=2, description="Readings kept in memory for the charts."
    )
    dead_letters_interval_s: float = Field(
        default=10,
        gt=0,
        description="How often each service's dead letters are listed (each listing reads its "
        "dead-letter topics from the start).",
    )
    request_timeout_s: float = Field(
        default=3, gt=0, description="How long a service may take to answer one read."
    )
    log_level: str = Field(default="INFO", description="Root log level.")

    def operator_token(self, service: str) -> str:
        """The operator token the dashboard presents to a service."""
        token: SecretStr = getattr(self, f"{service}_operator_token")
        return token.get_secret_value()

    @model_validator(mode="after")
    def _refuse_development_secrets_outside_development(self) -> OpsSettings:
        refuse_development_secrets(self, self.environment)
        return self

    @model_validator(mode="after")
    def _refuse_plaintext_in_production(self) -> OpsSettings:
        # The dashboard sends operator tokens and staff passwords to the services (TLS).
        plaintext = sorted(
            name for name, url in self.services.items() if not url.startswith("https://")
        )
        if self.environment == "production" and plaintext:
            raise ValueError(f"plaintext connections are refused in production: {plaintext}")
        return self
