"""Retention settings: `RETENTION_` environment variables, nested with `__`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import DEVELOPMENT_SECRET_PREFIX, ServiceSettings, embedded_database_url


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
    step_timeout_s: float = Field(
        default=600, gt=0, description="How long a saga step may take before it is retried."
    )
    max_step_attempts: int = Field(
        default=3, ge=1, description="Requests per step before the saga needs a person."
    )
    deadline_check_interval_s: float = Field(
        default=5, gt=0, description="How often overdue saga steps are looked for."
    )
    operator_token: SecretStr = Field(
        default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}operator-token"),
        description="Bearer token operators use to list sagas in flight.",
    )
