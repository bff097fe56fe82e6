"""Billing settings: `BILLING_` environment variables, nested with `__`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import DEVELOPMENT_SECRET_PREFIX, ServiceSettings, embedded_database_url


class PaymentSettings(BaseModel):
    """The payment gateway billing sends payers to (NO-PAN: it never sees a card)."""

    gateway: Literal["none", "sandbox", "stripe"] = Field(
        default="none", description="none: payments are off; sandbox: the dev gateway; stripe."
    )
    sandbox_url: str = Field(default="http://127.0.0.1:8010", description="The sandbox's API.")
    stripe_api_base: str | None = Field(
        default=None, description="Another address for Stripe's API (a local stand-in)."
    )
    api_key: SecretStr = Field(default=SecretStr(""), description="The gateway's secret key.")
    webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="The secret its webhooks are signed with."
    )
    webhook_tolerance_s: int = Field(
        default=300, ge=1, description="Oldest signature timestamp accepted: replays are refused."
    )
    return_url: str | None = Field(
        default=None, description="Where the payer's browser goes after paying."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="A gateway call's time limit.")


class WebhookSettings(BaseModel):
    """Outbound webhooks to the accounts' endpoints."""

    allow_private_addresses: bool = Field(
        default=False,
        description="Deliver to private, loopback and link-local addresses (development only: "
        "refused by default against SSRF).",
    )
    allow_http: bool = Field(default=False, description="Accept http:// endpoints, not only https.")
    timeout_s: float = Field(default=10.0, gt=0, description="One attempt's time limit.")
    max_attempts: int = Field(default=8, ge=1, description="Tries before a dead letter.")
    first_retry_s: float = Field(default=30.0, gt=0, description="Wait after the first failure.")
    max_retry_s: float = Field(default=6 * 3600.0, gt=0, description="Longest wait between tries.")
    batch_size: int = Field(default=200, ge=1, description="Deliveries claimed at once.")
    concurrency: int = Field(default=32, ge=1, description="POSTs in flight at once.")
    lease_s: float = Field(
        default=120.0, gt=0, description="A claimed delivery is retried after this if unrecorded."
    )
    poll_interval_s: float = Field(default=0.5, gt=0, description="Wait when nothing is due.")
    rotation_overlap_hours: int = Field(
        default=24, ge=0, description="How long a rotated-out secret still signs."
    )


class BillingSettings(ServiceSettings):
    """Where billing's database and broker are, and its secrets."""

    model_config = SettingsConfigDict(
        env_prefix="BILLING_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        default=embedded_database_url("billing"), description="Billing's own database."
    )
    max_grant_hours: int = Field(default=72, ge=1, description="Longest staff access grant.")
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest request body; larger ones get a 413."
    )
    session_idle_minutes: int = Field(
        default=30, ge=1, description="A signed-in session ends after this long unused."
    )
    geoip_database: Path | None = Field(
        default=None,
        description="A GeoLite2 or GeoIP2 City or Country database (.mmdb): sessions then record "
        "an approximate location (city and country).",
    )
    session_absolute_hours: int = Field(
        default=12, ge=1, description="A signed-in session ends this long after sign-in."
    )
    sign_in_failures_per_user: int = Field(
        default=5, ge=1, description="Failed sign-ins to one user before it is throttled."
    )
    sign_in_failures_per_address: int = Field(
        default=20, ge=1, description="Failed sign-ins from one address before it is throttled."
    )
    sign_in_throttle_minutes: int = Field(
        default=15, ge=1, description="The window over which failed sign-ins are counted."
    )
    audit_token_signing_key: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}audit-token-signing-key"),
        description="PEM Ed25519 private key (PKCS#8) signing the short-lived tokens audit "
        "accepts (the access report, staff queries); audit holds its public half.",
    )
    audit_token_ttl_s: int = Field(
        default=300, ge=10, le=3600, description="How long a token for audit works."
    )
    audit_url: str = Field(
        default="http://127.0.0.1:8003", description="Where audit answers, for the tokens' users."
    )
    statement_interval_s: float = Field(
        default=3600.0, gt=0, description="How often due monthly statements are looked for."
    )
    recurring_interval_s: float = Field(
        default=60.0, gt=0, description="How often due recurring invoices are looked for."
    )
    payments: PaymentSettings = Field(
        default_factory=PaymentSettings, description="The payment gateway."
    )
    webhooks: WebhookSettings = Field(
        default_factory=WebhookSettings, description="Outbound webhooks."
    )
