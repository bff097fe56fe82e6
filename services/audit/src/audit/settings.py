"""Audit settings: `AUDIT_` environment variables, nested with `__`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, embedded_database_url


class AuditSettings(ServiceSettings):
    """Where audit's database and broker are."""

    model_config = SettingsConfigDict(
        env_prefix="AUDIT_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        default=embedded_database_url("audit"), description="Audit's own database."
    )
