"""Settings: development defaults of secrets are refused outside development, nested ones too."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, SecretStr, ValidationError

from shared.settings import (
    DEVELOPMENT_SECRET_PREFIX,
    KafkaSettings,
    KeyStoreSettings,
    ServiceSettings,
)

URL = "postgresql+asyncpg://x/y?ssl=verify-full"
REAL_KEYSTORE = KeyStoreSettings(
    master_key=SecretStr("a-real-master-key"), url="postgresql://x/keys?sslmode=verify-full"
)
TLS_BROKER = KafkaSettings(security_protocol="SSL")
TOKEN = SecretStr("a-real-operator-token")


class _Vault(BaseModel):
    token: SecretStr = Field(default=SecretStr(f"{DEVELOPMENT_SECRET_PREFIX}token"))
    spare: SecretStr | None = None


class _Nested(BaseModel):
    vault: _Vault = Field(default_factory=_Vault)


class _Settings(ServiceSettings):
    nested: _Nested = Field(default_factory=_Nested)


def test_a_nested_development_secret_is_refused_outside_development() -> None:
    assert _Settings(database_url=URL, environment="development")
    for environment in ("test", "production"):
        with pytest.raises(ValidationError, match=r"development default: nested\.vault\.token"):
            _Settings(
                database_url=URL,
                environment=environment,
                keystore=REAL_KEYSTORE,
                operator_token=TOKEN,
            )


def test_every_nested_development_secret_is_named() -> None:
    with pytest.raises(
        ValidationError, match=r"keystore\.master_key, operator_token, nested\.vault\.token"
    ):
        _Settings(database_url=URL, environment="production")


def test_a_nested_real_secret_is_accepted_in_production() -> None:
    nested = _Nested(vault=_Vault(token=SecretStr("a-real-token")))
    assert _Settings(
        database_url=URL,
        environment="production",
        kafka=TLS_BROKER,
        nested=nested,
        keystore=REAL_KEYSTORE,
        operator_token=TOKEN,
    )
