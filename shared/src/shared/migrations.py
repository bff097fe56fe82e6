"""Alembic glue: one env.py body for every service, and upgrades callable from code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.delivery import DeliveryTable


def alembic_config(migrations_dir: Path, url: str) -> Config:
    """An Alembic config for a service's migrations folder and database."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(migrations_dir: Path, url: str) -> None:
    """Bring a service's database to the newest revision (blocking; not inside an event loop)."""
    command.upgrade(alembic_config(migrations_dir, url), "head")


def run_migrations(service_metadata: MetaData) -> None:
    """The body of every service's env.py: its own tables plus the outbox and inbox."""
    target = [service_metadata, DeliveryTable.metadata]
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None, "sqlalchemy.url is not set"
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
        await engine.dispose()

    asyncio.run(run())


def create_outbox_notify_trigger() -> None:
    """In a revision's upgrade(): wake the relay at commit of every outbox insert."""
    from alembic import op

    from shared.delivery import CREATE_OUTBOX_NOTIFY_SQL

    for statement in CREATE_OUTBOX_NOTIFY_SQL:
        op.execute(statement)


def drop_outbox_notify_trigger() -> None:
    """In a revision's downgrade(): remove the relay's wake-up trigger."""
    from alembic import op

    from shared.delivery import DROP_OUTBOX_NOTIFY_SQL

    for statement in DROP_OUTBOX_NOTIFY_SQL:
        op.execute(statement)
