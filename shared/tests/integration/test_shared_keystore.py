"""The Postgres key store against a real PostgreSQL: one key per account, gone after the purge."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from devstack.fake_transit import FakeTransit
from devstack.processes import free_port
from devstack.stack import Stack
from shared.crypto import KeyDestroyedError
from shared.keystore import LocalKeyWrapper, PostgresKeyStore, VaultTransitKeyWrapper

pytestmark = pytest.mark.integration

MASTER_KEY = b"integration-test master key"


@pytest.fixture(scope="module")
async def keystore_database(infrastructure: Stack) -> str:
    """A key-store database of this module's own."""
    name = f"keystore_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(infrastructure.create_databases, [name], suffixed=False)
    return infrastructure.admin_url().rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
async def store(keystore_database: str) -> AsyncIterator[PostgresKeyStore]:
    store = PostgresKeyStore(keystore_database, LocalKeyWrapper(MASTER_KEY))
    await store.start()
    yield store
    await store.close()


async def _rows_about(url: str, account_id: uuid.UUID) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(
            "SELECT * FROM account_data_key WHERE account_id = $1", account_id
        )
        return rows
    finally:
        await connection.close()


@pytest.mark.clause("TERMINATION")
async def test_termination_twenty_concurrent_writers_get_one_key(
    store: PostgresKeyStore, keystore_database: str
) -> None:
    account_id = uuid.uuid4()
    keys = await asyncio.gather(*(store.key_for_writing(account_id) for _ in range(20)))
    assert len({key.key_id for key in keys}) == 1
    assert len({key.secret for key in keys}) == 1
    assert len(await _rows_about(keystore_database, account_id)) == 1


@pytest.mark.clause("TERMINATION")
async def test_termination_destroy_leaves_no_row_and_the_key_unreadable(
    store: PostgresKeyStore, keystore_database: str
) -> None:
    account_id = uuid.uuid4()
    key = await store.key_for_writing(account_id)

    assert await store.destroy(account_id) == [key.key_id]

    assert await _rows_about(keystore_database, account_id) == []
    with pytest.raises(KeyDestroyedError):
        await store.key(key.key_id)
    assert await store.destroy(account_id) == [], "idempotent"


@pytest.mark.clause("TERMINATION")
async def test_termination_keys_are_read_together_and_a_destroyed_one_is_absent(
    store: PostgresKeyStore,
) -> None:
    kept, destroyed = uuid.uuid4(), uuid.uuid4()
    kept_key = await store.key_for_writing(kept)
    destroyed_key = await store.key_for_writing(destroyed)
    await store.destroy(destroyed)

    found = await store.keys([kept_key.key_id, destroyed_key.key_id, "never-made"])

    assert list(found) == [kept_key.key_id]
    assert found[kept_key.key_id].secret == kept_key.secret
    assert found[kept_key.key_id].account_id == kept
    assert await store.keys([]) == {}


@pytest.mark.clause("TERMINATION")
async def test_termination_another_service_reads_the_same_key(
    store: PostgresKeyStore, keystore_database: str
) -> None:
    account_id = uuid.uuid4()
    written = await store.key_for_writing(account_id)
    other_service = PostgresKeyStore(keystore_database, LocalKeyWrapper(MASTER_KEY))
    await other_service.start()
    try:
        assert await other_service.key(written.key_id) == written
        assert await other_service.key_for_writing(account_id) == written
    finally:
        await other_service.close()


@pytest.mark.clause("TERMINATION")
async def test_termination_the_table_holds_wrapped_keys_only(
    store: PostgresKeyStore, keystore_database: str
) -> None:
    account_id = uuid.uuid4()
    key = await store.key_for_writing(account_id)
    [row] = await _rows_about(keystore_database, account_id)
    assert row["key_id"] == key.key_id
    assert key.secret not in bytes(row["wrapped"])
    assert key.secret.hex().encode() not in bytes(row["wrapped"])


@pytest.mark.clause("TERMINATION")
async def test_termination_a_restored_backup_row_is_unreadable_after_vault_forgets_the_account(
    keystore_database: str,
) -> None:
    """With the Vault adapter (against a fake Transit API), a backup copy of the row dies too."""
    transit = FakeTransit(token="test-vault-token")
    async with httpx.AsyncClient(transport=transit.transport()) as client:
        wrapper = VaultTransitKeyWrapper("http://vault.test", "test-vault-token", client=client)
        store = PostgresKeyStore(keystore_database, wrapper)
        await store.start()
        try:
            account_id = uuid.uuid4()
            key = await store.key_for_writing(account_id)
            [backup] = await _rows_about(keystore_database, account_id)

            await store.destroy(account_id)
            await store.pool.execute(
                "INSERT INTO account_data_key (key_id, account_id, wrapped) VALUES ($1, $2, $3)",
                backup["key_id"],
                backup["account_id"],
                backup["wrapped"],
            )

            with pytest.raises(KeyDestroyedError):
                await store.key(key.key_id)
        finally:
            await store.close()


@pytest.mark.clause("TERMINATION")
async def test_termination_a_destroyed_account_never_gets_a_key_again(
    store: PostgresKeyStore,
) -> None:
    """TERMINATION: after the purge nothing new about the account can be sealed, and the key
    store remembers the account only by a hash."""
    account_id = uuid.uuid4()
    await store.key_for_writing(account_id)
    await store.destroy(account_id)
    with pytest.raises(KeyDestroyedError):
        await store.key_for_writing(account_id)
    rows = await store.pool.fetch("SELECT * FROM destroyed_account")
    assert all(str(account_id) not in str(dict(row)) for row in rows)


async def test_a_service_starting_while_its_key_store_database_is_down_waits_for_it(
    keystore_database: str,
) -> None:
    """A database that restarts (or is not up yet) when a service starts: the key store waits
    for it instead of failing the start, and gives up after its wait."""
    url = urlsplit(keystore_database)
    port = free_port()
    late = PostgresKeyStore(
        url._replace(netloc=f"{url.username}@127.0.0.1:{port}").geturl(),
        LocalKeyWrapper(MASTER_KEY),
    )
    forwarding: asyncio.Server | None = None

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def open_later() -> None:
        nonlocal forwarding
        await asyncio.sleep(2)  # the database comes up two seconds after the service starts
        forwarding = await asyncio.start_server(forward, "127.0.0.1", port)

    opening = asyncio.create_task(open_later())
    try:
        await asyncio.wait_for(late.start(wait_s=30), 60)
        account = uuid.uuid4()
        assert (await late.key_for_writing(account)).key_id
    finally:
        await opening
        await late.close()
        if forwarding is not None:
            forwarding.close()
    nowhere = PostgresKeyStore(
        url._replace(netloc=f"{url.username}@127.0.0.1:{free_port()}").geturl(),
        LocalKeyWrapper(MASTER_KEY),
    )
    with pytest.raises(ConnectionRefusedError):
        await nowhere.start(wait_s=1)
