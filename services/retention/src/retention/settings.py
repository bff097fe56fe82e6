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
