"""Key-store pieces without a database: wrappers, the cache, settings and the factory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from devstack.fake_transit import FakeTransit
from shared.crypto import DataKey, KeyDestroyedError, new_data_key
from shared.keystore import (
    CachedKeyStore,
    KeyStoreSettings,
    KeyUnwrapError,
    LocalKeyWrapper,
    MemoryKeyStore,
    PostgresKeyStore,
    VaultTransitKeyWrapper,
    create_key_store,
    master_key_bytes,
)
from shared.settings import KafkaSettings, ServiceSettings

ACCOUNT = uuid.uuid4()
TOKEN = "test-vault-token"


# --- the local wrapper ---------------------------------------------------------------------


async def test_local_wrapper_round_trips_and_binds_the_wrapped_key_to_its_account() -> None:
    wrapper = LocalKeyWrapper(b"test master key of any length")
    key = new_data_key()
    wrapped = await wrapper.wrap(ACCOUNT, key.key_id, key.secret)
    assert key.secret not in wrapped
    assert await wrapper.unwrap(ACCOUNT, key.key_id, wrapped) == key.secret
    with pytest.raises(KeyUnwrapError):
        await wrapper.unwrap(uuid.uuid4(), key.key_id, wrapped)


async def test_a_wrong_master_key_is_an_unwrap_error_not_a_destroyed_key() -> None:
    """A misconfigured master key must not pass for a purge (which would drop events)."""
    key = new_data_key()
    wrapped = await LocalKeyWrapper(b"the master key").wrap(ACCOUNT, key.key_id, key.secret)
    with pytest.raises(KeyUnwrapError) as caught:
        await LocalKeyWrapper(b"another master key").unwrap(ACCOUNT, key.key_id, wrapped)
    assert not isinstance(caught.value, KeyDestroyedError)


def test_a_32_byte_master_key_is_used_as_is_and_others_are_stretched_with_hkdf() -> None:
    exact = b"k" * 32
    assert master_key_bytes(exact) == exact
    stretched = master_key_bytes("a passphrase")
    assert len(stretched) == 32
    assert stretched == master_key_bytes(b"a passphrase"), "deterministic"
    assert stretched != master_key_bytes("another passphrase")


# --- the Vault Transit adapter -------------------------------------------------------------


@pytest.fixture
async def transit() -> AsyncIterator[tuple[FakeTransit, VaultTransitKeyWrapper]]:
    fake = FakeTransit(token=TOKEN, mount="secret-transit")
    async with httpx.AsyncClient(transport=fake.transport()) as client:
        yield (
            fake,
            VaultTransitKeyWrapper(
                "http://vault.test:8200/", TOKEN, mount="secret-transit", client=client
            ),
        )


@pytest.mark.clause("TERMINATION")
async def test_termination_vault_wrapper_speaks_the_documented_transit_api_to_a_fake_transit(
    transit: tuple[FakeTransit, VaultTransitKeyWrapper],
) -> None:
    """Proves the adapter's requests match the documented API, not that a real Vault was used."""
    fake, wrapper = transit
    key = new_data_key()
    name = f"quittance-account-{ACCOUNT}"
    base = "/v1/secret-transit"

    wrapped = await wrapper.wrap(ACCOUNT, key.key_id, key.secret)
    assert wrapped.startswith(b"vault:v1:")
    assert name in fake.keys, "one Transit key per account"
    assert await wrapper.unwrap(ACCOUNT, key.key_id, wrapped) == key.secret

    await wrapper.forget(ACCOUNT)
    assert name not in fake.keys
    assert fake.requests == [
        ("POST", f"{base}/keys/{name}"),
        ("POST", f"{base}/encrypt/{name}"),
        ("POST", f"{base}/decrypt/{name}"),
        ("GET", f"{base}/keys/{name}"),
        ("POST", f"{base}/keys/{name}/config"),
        ("DELETE", f"{base}/keys/{name}"),
    ]


@pytest.mark.clause("TERMINATION")
async def test_termination_a_wrapped_key_copy_is_unreadable_once_vault_forgets_the_account(
    transit: tuple[FakeTransit, VaultTransitKeyWrapper],
) -> None:
    _, wrapper = transit
    key = new_data_key()
    backup = await wrapper.wrap(ACCOUNT, key.key_id, key.secret)  # e.g. in a database backup
    await wrapper.forget(ACCOUNT)
    await wrapper.forget(ACCOUNT)  # idempotent
    with pytest.raises(KeyDestroyedError):
        await wrapper.unwrap(ACCOUNT, key.key_id, backup)


async def test_an_altered_vault_ciphertext_is_an_unwrap_error_while_the_key_exists(
    transit: tuple[FakeTransit, VaultTransitKeyWrapper],
) -> None:
    _, wrapper = transit
    key = new_data_key()
    wrapped = await wrapper.wrap(ACCOUNT, key.key_id, key.secret)
    altered = wrapped[:-4] + (b"AAAA" if not wrapped.endswith(b"AAAA") else b"BBBB")
    with pytest.raises(KeyUnwrapError):
        await wrapper.unwrap(ACCOUNT, key.key_id, altered)


async def test_the_vault_wrapper_surfaces_refusals_other_than_a_missing_key() -> None:
    fake = FakeTransit(token="the-right-token")
    async with httpx.AsyncClient(transport=fake.transport()) as client:
        wrapper = VaultTransitKeyWrapper("http://vault.test", "a-wrong-token", client=client)
        with pytest.raises(httpx.HTTPStatusError, match="403"):
            await wrapper.wrap(ACCOUNT, "k", b"x" * 32)


# --- the in-memory stores ------------------------------------------------------------------


class _CountingStore(MemoryKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.asked: list[list[str]] = []

    async def key(self, key_id: str) -> DataKey:
        self.reads += 1
        return await super().key(key_id)

    async def keys(self, key_ids: Collection[str]) -> dict[str, DataKey]:
        self.reads += 1
        self.asked.append(sorted(key_ids))
        return await super().keys(key_ids)


async def test_memory_store_gives_one_key_per_account_and_destroys_it() -> None:
    store = MemoryKeyStore()
    key = await store.key_for_writing(ACCOUNT)
    assert await store.key_for_writing(ACCOUNT) is key
    assert await store.key(key.key_id) is key
    assert await store.destroy(ACCOUNT) == [key.key_id]
    assert await store.destroy(ACCOUNT) == []
    with pytest.raises(KeyDestroyedError):
        await store.key(key.key_id)


async def test_the_cache_reads_the_store_once_per_ttl() -> None:
    inner = _CountingStore()
    key = await inner.key_for_writing(ACCOUNT)
    cached = CachedKeyStore(inner, ttl_s=60)
    for _ in range(5):
        assert await cached.key(key.key_id) is key
    assert inner.reads == 1

    expiring = CachedKeyStore(inner, ttl_s=0)
    await expiring.key(key.key_id)
    await expiring.key(key.key_id)
    assert inner.reads == 3


@pytest.mark.clause("TERMINATION")
async def test_termination_destroying_through_the_cache_evicts_the_key_at_once() -> None:
    inner = MemoryKeyStore()
    cached = CachedKeyStore(inner, ttl_s=3600)
    key = await cached.key_for_writing(ACCOUNT)
    assert await cached.key(key.key_id) is key
    assert await cached.destroy(ACCOUNT) == [key.key_id]
    with pytest.raises(KeyDestroyedError):
        await cached.key(key.key_id)
    with pytest.raises(KeyDestroyedError):
        await cached.key_for_writing(ACCOUNT)  # a purged account never gets a key again


# --- settings and the factory --------------------------------------------------------------


class _BillingLike(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", env_nested_delimiter="__")


def test_keystore_settings_default_to_the_embedded_keystore_database() -> None:
    settings = KeyStoreSettings()
    assert settings.url == "postgresql://postgres@127.0.0.1:55432/keystore"
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value().startswith("dev-only-")


def test_keystore_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql+asyncpg://u@db/billing?ssl=verify-full")
    monkeypatch.setenv("BILLING_KAFKA__SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv(
        "BILLING_KEYSTORE__URL", "postgresql://u@keys.example/keystore?sslmode=verify-full"
    )
    monkeypatch.setenv("BILLING_KEYSTORE__MASTER_KEY", "a-real-master-key")
    monkeypatch.setenv("BILLING_OPERATOR_TOKEN", "a-real-operator-token")
    settings = _BillingLike(environment="production")
    assert settings.keystore.url == "postgresql://u@keys.example/keystore?sslmode=verify-full"


def test_the_development_master_key_is_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match=r"keystore\.master_key"):
        _BillingLike(database_url="postgresql+asyncpg://u@db/billing", environment="production")


def test_the_vault_backend_needs_its_address_and_drops_the_unused_master_key() -> None:
    with pytest.raises(ValidationError, match="vault_url and vault_token"):
        KeyStoreSettings(backend="vault")
    settings = KeyStoreSettings(
        backend="vault", vault_url="https://vault:8200", vault_token=SecretStr("t")
    )
    assert settings.master_key is None
    assert _BillingLike(
        database_url="postgresql+asyncpg://u@db/billing?ssl=verify-full",
        environment="production",
        kafka=KafkaSettings(security_protocol="SSL"),
        keystore=settings,
        operator_token=SecretStr("a-real-operator-token"),
    )


@pytest.mark.parametrize(
    ("settings", "wrapper_class"),
    [
        (KeyStoreSettings(master_key=SecretStr("m")), LocalKeyWrapper),
        (
            KeyStoreSettings(backend="vault", vault_url="http://v", vault_token=SecretStr("t")),
            VaultTransitKeyWrapper,
        ),
    ],
)
async def test_the_factory_builds_a_cached_postgres_store_with_the_chosen_wrapper(
    settings: KeyStoreSettings, wrapper_class: type
) -> None:
    store = create_key_store(settings.model_copy(update={"cache_ttl_s": 5}))
    assert isinstance(store, CachedKeyStore)
    assert isinstance(store.inner, PostgresKeyStore)
    assert isinstance(store.inner._wrapper, wrapper_class)
    assert store._ttl_s == 5
    await store.inner._wrapper.close()


async def test_the_cache_fetches_only_the_missing_keys_of_a_batch_in_one_read() -> None:
    inner = _CountingStore()
    first = await inner.key_for_writing(uuid.uuid4())
    second = await inner.key_for_writing(uuid.uuid4())
    cached = CachedKeyStore(inner, ttl_s=60)
    await cached.key(first.key_id)
    found = await cached.keys([first.key_id, second.key_id, "unknown"])
    assert found == {first.key_id: first, second.key_id: second}, "the unknown id is absent"
    assert inner.asked == [sorted([second.key_id, "unknown"])], "one read, of the missing only"
    assert await cached.keys([first.key_id, second.key_id]) == found
    assert inner.reads == 2, "both now remembered"
