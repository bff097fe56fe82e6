"""The per-account data keys behind crypto-shredding, shared by every service (TERMINATION).

Keys are stored wrapped in a dedicated key-store database that every service reaches (never a
service's own database). A `KeyWrapper` wraps them: Vault Transit in production, a master key in
development. Destroying an account's key deletes its row and asks the wrapper to forget the
account, so every sealed copy in topics, dead-letter topics and backups becomes unreadable.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import time
from collections.abc import Collection
from typing import Any, Protocol, TypeVar
from uuid import UUID

import asyncpg
import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.crypto import KEY_BYTES, NONCE_BYTES, DataKey, KeyDestroyedError, new_data_key
from shared.settings import KeyStoreSettings

log = logging.getLogger(__name__)

__all__ = [
    "CachedKeyStore",
    "KeyStore",
    "KeyStoreSettings",
    "KeyUnwrapError",
    "KeyWrapper",
    "LocalKeyWrapper",
    "MemoryKeyStore",
    "PostgresKeyStore",
    "VaultTransitKeyWrapper",
    "create_key_store",
    "master_key_bytes",
]

CREATE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS account_data_key (
    key_id text PRIMARY KEY,
    account_id uuid NOT NULL UNIQUE,
    wrapped bytea NOT NULL,
    created_at timestamptz DEFAULT now()
);
CREATE TABLE IF NOT EXISTS destroyed_account (
    account_hash text PRIMARY KEY,
    destroyed_at timestamptz DEFAULT now()
)
"""


def account_hash(account_id: UUID) -> str:
    """How the key store remembers a purged account: a hash, never the id itself."""
    return hashlib.sha256(b"quittance-destroyed-account|" + account_id.bytes).hexdigest()


class KeyUnwrapError(Exception):
    """A stored key exists but cannot be unwrapped: a wrong master key or an altered row.

    Deliberately not a KeyDestroyedError: a misconfiguration must not pass for a purge.
    """

    def __init__(self, key_id: str) -> None:
        super().__init__(f"data key {key_id} could not be unwrapped")
        self.key_id = key_id


class KeyStore(Protocol):
    """Where services get, read and destroy per-account data keys."""

    async def key_for_writing(self, account_id: UUID) -> DataKey:
        """Return the account's current key, creating it on first use."""
        ...

    async def key(self, key_id: str) -> DataKey:
        """Return a key by id; raise KeyDestroyedError if it is unknown or destroyed."""
        ...

    async def keys(self, key_ids: Collection[str]) -> dict[str, DataKey]:
        """Return the keys of these ids that exist, in one round trip; the others are absent."""
        ...

    async def destroy(self, account_id: UUID) -> list[str]:
        """Destroy every key of the account; return their ids. Idempotent.

        A destroyed account never gets a key again: key_for_writing raises KeyDestroyedError.
        """
        ...

    def evict(self, account_id: UUID) -> None:
        """Forget any copy of the account's keys held in this process."""
        ...

    async def start(self) -> None:
        """Open connections."""
        ...

    async def close(self) -> None:
        """Close connections."""
        ...


class KeyWrapper(Protocol):
    """Encrypts stored data keys under a key the key-store database never sees."""

    async def wrap(self, account_id: UUID, key_id: str, plaintext: bytes) -> bytes:
        """Return the wrapped form of a data key."""
        ...

    async def unwrap(self, account_id: UUID, key_id: str, wrapped: bytes) -> bytes:
        """Return the data key; KeyDestroyedError if forgotten, KeyUnwrapError if it fails."""
        ...

    async def forget(self, account_id: UUID) -> None:
        """Make the account's wrapped keys unreadable wherever copies are. Idempotent."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


# --- wrappers ------------------------------------------------------------------------------


def master_key_bytes(master_key: str | bytes) -> bytes:
    """Return 32 key bytes: the value itself when exactly 32 bytes, else HKDF-SHA256 of it."""
    raw = master_key.encode() if isinstance(master_key, str) else master_key
    if len(raw) == KEY_BYTES:
        return raw
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"quittance-keystore")
    return hkdf.derive(raw)


class LocalKeyWrapper:
    """AES-GCM under a master key from settings: for development and tests.

    `forget` can do nothing here: a restored database backup still holds wrapped keys that the
    master key opens. Production uses `VaultTransitKeyWrapper`, whose `forget` deletes the key.
    """

    def __init__(self, master_key: bytes) -> None:
        self._cipher = AESGCM(master_key_bytes(master_key))

    async def wrap(self, account_id: UUID, key_id: str, plaintext: bytes) -> bytes:
        """Seal the key, bound to its account and id."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher.encrypt(nonce, plaintext, _binding(account_id, key_id))

    async def unwrap(self, account_id: UUID, key_id: str, wrapped: bytes) -> bytes:
        """Open a sealed key."""
        try:
            return self._cipher.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _binding(account_id, key_id)
            )
        except InvalidTag:
            raise KeyUnwrapError(key_id) from None

    async def forget(self, account_id: UUID) -> None:
        """Nothing to forget: the shared master key stays."""

    async def close(self) -> None:
        """Nothing to release."""


def _binding(account_id: UUID, key_id: str) -> bytes:
    return account_id.bytes + key_id.encode()


class VaultTransitKeyWrapper:
    """Vault Transit: one Transit key per account, deleted when the account is purged."""

    def __init__(
        self,
        url: str,
        token: str,
        mount: str = "transit",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._base = f"{url.rstrip('/')}/v1/{mount.strip('/')}"
        self._headers = {"X-Vault-Token": token}
        self._client = client or httpx.AsyncClient(timeout=10)
        self._owns_client = client is None

    @staticmethod
    def key_name(account_id: UUID) -> str:
        """Name of the account's Transit key."""
        return f"quittance-account-{account_id}"

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self._client.request(
            method, f"{self._base}/{path}", json=body, headers=self._headers
        )
        response.raise_for_status()
        return response.json() if response.content else None

    async def wrap(self, account_id: UUID, key_id: str, plaintext: bytes) -> bytes:
        """Create the account's Transit key if needed, then encrypt with it."""
        name = self.key_name(account_id)
        # Creating an existing key is a no-op in Transit; wrap runs once per account key.
        await self._call("POST", f"keys/{name}", {"type": "aes256-gcm96"})
        answer = await self._call(
            "POST", f"encrypt/{name}", {"plaintext": base64.b64encode(plaintext).decode()}
        )
        return str(answer["data"]["ciphertext"]).encode()

    async def unwrap(self, account_id: UUID, key_id: str, wrapped: bytes) -> bytes:
        """Decrypt with the account's Transit key; a deleted key means a destroyed data key."""
        try:
            answer = await self._call(
                "POST",
                f"decrypt/{self.key_name(account_id)}",
                {"ciphertext": wrapped.decode()},
            )
        except httpx.HTTPStatusError as error:
            if error.response.status_code != 400:
                raise
            # Transit answers 400 both for a deleted key and for an altered ciphertext.
            if not await self._key_exists(account_id):
                raise KeyDestroyedError(key_id) from None
            raise KeyUnwrapError(key_id) from None
        return base64.b64decode(answer["data"]["plaintext"])

    async def _key_exists(self, account_id: UUID) -> bool:
        read = await self._client.get(
            f"{self._base}/keys/{self.key_name(account_id)}", headers=self._headers
        )
        if read.status_code == 404:
            return False
        read.raise_for_status()
        return True

    async def forget(self, account_id: UUID) -> None:
        """Allow deletion of the account's Transit key, then delete it."""
        if not await self._key_exists(account_id):
            return  # already forgotten
        name = self.key_name(account_id)
        await self._call("POST", f"keys/{name}/config", {"deletion_allowed": True})
        await self._call("DELETE", f"keys/{name}")

    async def close(self) -> None:
        """Close the HTTP client if this wrapper made it."""
        if self._owns_client:
            await self._client.aclose()


# --- stores --------------------------------------------------------------------------------


# How long a starting service waits for the key store's database (restarting, or not up yet).
START_WAIT_S = 120.0
# What a database that is down or still starting answers a new connection with.
UNREACHABLE = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
)


def _kind(error: BaseException) -> str:
    return type(error).__name__


class PostgresKeyStore:
    """Wrapped keys in a dedicated key-store database, one row per account."""

    def __init__(self, url: str, wrapper: KeyWrapper, *, pool_size: int = 4) -> None:
        # asyncpg speaks libpq URLs; accept the SQLAlchemy spelling too.
        self._url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._wrapper = wrapper
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool; the store must be started."""
        if self._pool is None:
            raise RuntimeError("PostgresKeyStore.start() was not awaited")
        return self._pool

    async def start(self, *, wait_s: float = START_WAIT_S) -> None:
        """Open the pool and create the table if missing; a database that is restarting (or
        not up yet) is waited for, so a service started meanwhile does not exit."""
        give_up = time.monotonic() + wait_s
        while self._pool is None:
            try:
                pool = await asyncpg.create_pool(self._url, min_size=1, max_size=self._pool_size)
            except UNREACHABLE as unreachable:
                if time.monotonic() > give_up:
                    raise
                log.warning("the key store is not reachable yet (%s); waiting", _kind(unreachable))
                await asyncio.sleep(0.5)
                continue
            async with pool.acquire() as connection, connection.transaction():
                # Services start together: CREATE TABLE IF NOT EXISTS alone races in the catalog.
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('account_data_key'))"
                )
                await connection.execute(CREATE_TABLE_SQL)
            self._pool = pool

    async def close(self) -> None:
        """Close the pool and the wrapper's client."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self._wrapper.close()

    async def key_for_writing(self, account_id: UUID) -> DataKey:
        """Return the account's key, creating it once however many callers race."""
        row = await self._row_for_account(account_id)
        if row is None:
            if await self.pool.fetchval(
                "SELECT 1 FROM destroyed_account WHERE account_hash = $1", account_hash(account_id)
            ):
                # A purged account never gets a key again: nothing new about it can be sealed.
                raise KeyDestroyedError(f"account {account_hash(account_id)[:12]}")
            candidate = new_data_key(account_id)
            wrapped = await self._wrapper.wrap(account_id, candidate.key_id, candidate.secret)
            await self.pool.execute(
                "INSERT INTO account_data_key (key_id, account_id, wrapped) VALUES ($1, $2, $3)"
                " ON CONFLICT (account_id) DO NOTHING",
                candidate.key_id,
                account_id,
                wrapped,
            )
            row = await self._row_for_account(account_id)
            if row is None:  # the account was destroyed while its key was being created
                raise KeyDestroyedError(candidate.key_id)
            if row["key_id"] == candidate.key_id:
                return candidate
        return await self._unwrap(account_id, row["key_id"], row["wrapped"])

    async def key(self, key_id: str) -> DataKey:
        """Return a key by id, or raise KeyDestroyedError."""
        row = await self.pool.fetchrow(
            "SELECT account_id, wrapped FROM account_data_key WHERE key_id = $1", key_id
        )
        if row is None:
            raise KeyDestroyedError(key_id)
        return await self._unwrap(row["account_id"], key_id, row["wrapped"])

    async def keys(self, key_ids: Collection[str]) -> dict[str, DataKey]:
        """Return the keys of these ids that exist, in one query."""
        if not key_ids:
            return {}
        rows = await self.pool.fetch(
            "SELECT key_id, account_id, wrapped FROM account_data_key WHERE key_id = ANY($1)",
            list(key_ids),
        )
        return {
            row["key_id"]: await self._unwrap(row["account_id"], row["key_id"], row["wrapped"])
            for row in rows
        }

    async def destroy(self, account_id: UUID) -> list[str]:
        """Delete the account's key row, then have the wrapper forget the account."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO destroyed_account (account_hash) VALUES ($1) ON CONFLICT DO NOTHING",
                account_hash(account_id),
            )
            rows = await connection.fetch(
                "DELETE FROM account_data_key WHERE account_id = $1 RETURNING key_id", account_id
            )
        # Called even when no row is left, so a retry after a failed forget completes it.
        await self._wrapper.forget(account_id)
        return [row["key_id"] for row in rows]

    def evict(self, account_id: UUID) -> None:
        """Nothing is held in memory here."""

    async def _row_for_account(self, account_id: UUID) -> Any:
        return await self.pool.fetchrow(
            "SELECT key_id, wrapped FROM account_data_key WHERE account_id = $1", account_id
        )

    async def _unwrap(self, account_id: UUID, key_id: str, wrapped: bytes) -> DataKey:
        return DataKey(key_id, await self._wrapper.unwrap(account_id, key_id, wrapped), account_id)


class MemoryKeyStore:
    """Keys in a dict: for unit tests of code that needs a `KeyStore`."""

    def __init__(self) -> None:
        self._by_account: dict[UUID, DataKey] = {}
        self._destroyed: set[UUID] = set()

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def key_for_writing(self, account_id: UUID) -> DataKey:
        """Return the account's key, creating it on first use (never after destroy)."""
        if account_id in self._destroyed:
            raise KeyDestroyedError(str(account_id))
        return self._by_account.setdefault(account_id, new_data_key(account_id))

    async def key(self, key_id: str) -> DataKey:
        """Return a key by id, or raise KeyDestroyedError."""
        for key in self._by_account.values():
            if key.key_id == key_id:
                return key
        raise KeyDestroyedError(key_id)

    async def keys(self, key_ids: Collection[str]) -> dict[str, DataKey]:
        """Return the keys of these ids that exist."""
        wanted = set(key_ids)
        return {key.key_id: key for key in self._by_account.values() if key.key_id in wanted}

    async def destroy(self, account_id: UUID) -> list[str]:
        """Forget the account's key, for good."""
        self._destroyed.add(account_id)
        key = self._by_account.pop(account_id, None)
        return [] if key is None else [key.key_id]

    def evict(self, account_id: UUID) -> None:
        """Nothing is cached here."""


_Name = TypeVar("_Name", str, UUID)


class CachedKeyStore:
    """Keeps keys in memory for `ttl_s` seconds, so the hot path rarely reaches the store.

    A key destroyed by another process stays readable here for at most `ttl_s` seconds.
    """

    def __init__(self, inner: KeyStore, ttl_s: float = 60) -> None:
        self.inner = inner
        self._ttl_s = ttl_s
        self._by_id: dict[str, tuple[float, DataKey]] = {}
        self._by_account: dict[UUID, tuple[float, DataKey]] = {}

    async def start(self) -> None:
        """Start the inner store."""
        await self.inner.start()

    async def close(self) -> None:
        """Drop every cached key and close the inner store."""
        self._by_id.clear()
        self._by_account.clear()
        await self.inner.close()

    async def key_for_writing(self, account_id: UUID) -> DataKey:
        """Return the account's key, from memory while fresh."""
        cached = self._fresh(self._by_account, account_id)
        if cached is not None:
            return cached
        key = await self.inner.key_for_writing(account_id)
        self._remember(key, account_id)
        return key

    async def key(self, key_id: str) -> DataKey:
        """Return a key by id, from memory while fresh."""
        cached = self._fresh(self._by_id, key_id)
        if cached is not None:
            return cached
        key = await self.inner.key(key_id)
        self._remember(key)
        return key

    async def keys(self, key_ids: Collection[str]) -> dict[str, DataKey]:
        """Return the keys of these ids that exist: those in memory, the rest in one fetch."""
        found: dict[str, DataKey] = {}
        missing = []
        for key_id in key_ids:
            cached = self._fresh(self._by_id, key_id)
            if cached is None:
                missing.append(key_id)
            else:
                found[key_id] = cached
        if missing:
            for key in (await self.inner.keys(missing)).values():
                self._remember(key)
                found[key.key_id] = key
        return found

    async def destroy(self, account_id: UUID) -> list[str]:
        """Destroy in the inner store and evict the account's keys here, even if that fails."""
        destroyed: list[str] = []
        try:
            destroyed = await self.inner.destroy(account_id)
        finally:
            self.evict(account_id)
            for key_id in destroyed:
                self._by_id.pop(key_id, None)
        return destroyed

    def evict(self, account_id: UUID) -> None:
        """Drop this process's copies of the account's keys (another service destroyed them)."""
        evicted = self._by_account.pop(account_id, None)
        if evicted is not None:
            self._by_id.pop(evicted[1].key_id, None)
        for key_id in [k for k, (_, key) in self._by_id.items() if key.account_id == account_id]:
            self._by_id.pop(key_id, None)

    def _fresh(self, cache: dict[_Name, tuple[float, DataKey]], name: _Name) -> DataKey | None:
        entry = cache.get(name)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del cache[name]
            return None
        return entry[1]

    def _remember(self, key: DataKey, account_id: UUID | None = None) -> None:
        now = time.monotonic()
        if len(self._by_id) > 10_000:  # drop expired entries so memory follows live accounts
            _drop_expired(self._by_id, now)
            _drop_expired(self._by_account, now)
        expires = now + self._ttl_s
        self._by_id[key.key_id] = (expires, key)
        if account_id is not None:
            self._by_account[account_id] = (expires, key)


def _drop_expired(cache: dict[_Name, tuple[float, DataKey]], now: float) -> None:
    for name in [name for name, (expires, _) in cache.items() if expires <= now]:
        del cache[name]


def create_key_store(settings: KeyStoreSettings) -> KeyStore:
    """Build the cached key store the settings describe; the caller starts and closes it."""
    wrapper: KeyWrapper
    if settings.backend == "vault" and settings.vault_url and settings.vault_token:
        wrapper = VaultTransitKeyWrapper(
            settings.vault_url, settings.vault_token.get_secret_value(), settings.vault_mount
        )
    elif settings.backend == "postgres" and settings.master_key:
        wrapper = LocalKeyWrapper(settings.master_key.get_secret_value().encode())
    else:  # KeyStoreSettings refuses these combinations; settings built with model_construct
        raise ValueError(f"incomplete key-store settings for the {settings.backend} backend")
    return CachedKeyStore(PostgresKeyStore(settings.url, wrapper), ttl_s=settings.cache_ttl_s)
