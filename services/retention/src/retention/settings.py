"""Retention settings: `RETENTION_` environment variables, nested with `__`."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from retention.domain import FALLBACK_PLAN, PLANS, PlanTerms
from shared.settings import DEVELOPMENT_SECRET_PREFIX, ServiceSettings, embedded_database_url
from shared.signing import SigningKey, key_id_of


class RetentionSettings(ServiceSettings):
    """Where retention's database and broker are, who takes part in a termination, and its key."""

    model_config = SettingsConfigDict(
        env_prefix="RETENTION_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        default=embedded_database_url("retention"), description="Retention's own database."
    )
    participants: list[str] = Field(
        default=["billing", "notifications", "audit"],
        description="Services that export and purge an account's records.",
    )
    certificate_key: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}certificate-key"),
        description="Keys the account reference in purge certificates (HMAC-SHA256).",
    )
    certificate_signing_key: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}certificate-signing-key"),
        description="PEM Ed25519 private key (PKCS#8) that signs purge certificates; its public "
        "half is published at /certificates/signing-key.pem.",
    )
    certificate_retired_public_keys: list[str] = Field(
        default=[],
        description="PEM public keys of signing keys rotated out: still published, so the "
        "certificates they signed stay verifiable (and links they signed keep working).",
    )
    step_timeout_s: float = Field(
        default=600, gt=0, description="How long a saga step may take before it is retried."
    )
    max_step_attempts: int = Field(
        default=3, ge=1, description="Requests per step before the saga needs a person."
    )
    deadline_check_interval_s: float = Field(
        default=5, gt=0, description="How often overdue saga steps are looked for."
    )
    plans: dict[str, PlanTerms] = Field(
        default_factory=lambda: dict(PLANS),
        description="Each plan's grace period and how long it keeps each swept category "
        "(JSON; periods in seconds or ISO 8601, e.g. P90D).",
    )
    sweep_every_s: float = Field(
        default=86400, gt=0, description="How often the scheduled sweep runs (once a day)."
    )
    sweep_check_interval_s: float = Field(
        default=60, gt=0, description="How often an instance looks whether a sweep is due."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8002",
        description="Where customers reach retention: the base of export download links.",
    )

    @field_validator("certificate_retired_public_keys")
    @classmethod
    def _retired_keys_load(cls, value: list[str]) -> list[str]:
        """A retired key that is not an Ed25519 public key fails at start."""
        for pem in value:
            key_id_of(pem.encode())  # SigningKeyError is a ValueError
        return value

    @field_validator("plans")
    @classmethod
    def _fallback_plan_stated(cls, value: dict[str, PlanTerms]) -> dict[str, PlanTerms]:
        """An account of an unknown plan is kept as the fallback plan says: it must exist."""
        if FALLBACK_PLAN not in value:
            raise ValueError(f"the plans must include {FALLBACK_PLAN!r}")
        return value

    @field_validator("certificate_signing_key")
    @classmethod
    def _signing_key_loads(cls, value: SecretStr) -> SecretStr:
        """A key that cannot sign fails at start, not at the first certificate."""
        SigningKey.from_setting(value.get_secret_value())  # SigningKeyError is a ValueError
        return value
