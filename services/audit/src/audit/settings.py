"""Audit settings: `AUDIT_` environment variables, nested with `__`."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import DEVELOPMENT_SECRET_PREFIX, ServiceSettings, embedded_database_url
from shared.signing import SigningKey, public_key_from_setting


class AuditSettings(ServiceSettings):
    """Where audit's database and broker are; the keys of its references and checkpoints."""

    model_config = SettingsConfigDict(
        env_prefix="AUDIT_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        default=embedded_database_url("audit"), description="Audit's own database."
    )
    reference_key: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}audit-reference-key"),
        description="Keys the account reference in links and checkpoints (HMAC-SHA256).",
    )
    checkpoint_signing_key: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}audit-checkpoint-signing-key"),
        description="PEM Ed25519 private key (PKCS#8) that signs checkpoints; its public half "
        "is published at /checkpoints/signing-key.pem.",
    )
    checkpoint_interval_s: float = Field(
        default=60, gt=0, description="How often the chains' heads are signed."
    )
    verify_interval_s: float = Field(
        default=3600,
        gt=0,
        description="How often the whole trail is verified; a finding raises an alert.",
    )
    verify_processes: int = Field(
        default=0,
        ge=0,
        description="Processes a verification of many entries is spread over (each takes a "
        "stretch of at least 100,000); 0: one per CPU.",
    )
    billing_token_public_key: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}audit-token-signing-key"),
        description="Billing's PEM Ed25519 public key: audit accepts the tokens it signs (an "
        "owner's access report, security staff's queries). Not secret, but it must be billing's.",
    )
    alert_accounts_per_hour: int = Field(
        default=20, ge=1, description="One staff member reading more accounts in an hour alerts."
    )
    operator_token: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}audit-operator-token"),
        description="Bearer token operators use to verify the chains.",
    )

    @field_validator("billing_token_public_key")
    @classmethod
    def _public_key_loads(cls, value: SecretStr) -> SecretStr:
        """A key that cannot verify fails at start."""
        public_key_from_setting(value.get_secret_value())
        return value

    @field_validator("checkpoint_signing_key")
    @classmethod
    def _signing_key_loads(cls, value: SecretStr) -> SecretStr:
        """A key that cannot sign fails at start, not at the first checkpoint."""
        SigningKey.from_setting(value.get_secret_value())
        return value
