"""Alembic glue: one env.py body for every service, and upgrades callable from code."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.delivery import DeliveryTable
from shared.legal_holds import LegalHoldMark  # noqa: F401 - its table joins the shared metadata

# The advisory lock that serialises a database's migrations (any constant no other lock uses).
MIGRATION_LOCK = 0x51_7E_0B_0E


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
            # Instances of a service starting together (scale-out) migrate one at a time: the
            # next reads the version table only after the first committed, and finds it done.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
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


def upgrade_delivery_for_replay() -> None:
    """In a revision's upgrade(): the outbox keeps published events for a replay window,
    parks the unpublishable, and is searched by account; the inbox is pruned by age."""
    import sqlalchemy as sa
    from alembic import op

    op.add_column(
        "outbox_message",
        sa.Column("replayable", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column("outbox_message", sa.Column("published_at", sa.DateTime(timezone=True)))
    op.add_column("outbox_message", sa.Column("kafka_partition", sa.Integer()))
    op.add_column("outbox_message", sa.Column("kafka_offset", sa.BigInteger()))
    op.add_column("outbox_message", sa.Column("parked_at", sa.DateTime(timezone=True)))
    op.add_column("outbox_message", sa.Column("park_reason", sa.Text()))
    op.create_index(
        "ix_outbox_message_unpublished",
        "outbox_message",
        ["seq"],
        postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_message_parked",
        "outbox_message",
        ["seq"],
        postgresql_where=sa.text("parked_at IS NOT NULL"),
    )
    op.create_index(
        "ix_outbox_message_published",
        "outbox_message",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_index("ix_outbox_message_key", "outbox_message", ["key"])
    op.create_index("ix_inbox_message_handled_at", "inbox_message", ["handled_at"])


def downgrade_delivery_for_replay() -> None:
    """In a revision's downgrade(): undo upgrade_delivery_for_replay."""
    from alembic import op

    op.drop_index("ix_inbox_message_handled_at", table_name="inbox_message")
    for index in ("key", "published", "parked", "unpublished"):
        op.drop_index(f"ix_outbox_message_{index}", table_name="outbox_message")
    for column in (
        "park_reason",
        "parked_at",
        "kafka_offset",
        "kafka_partition",
        "published_at",
        "replayable",
    ):
        op.drop_column("outbox_message", column)


def create_legal_hold_table() -> None:
    """In a revision's upgrade(): the participant kit's `legal_hold` table (shared.legal_holds)."""
    import sqlalchemy as sa
    from alembic import op

    op.create_table(
        "legal_hold",
        sa.Column("hold_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    op.create_index("ix_legal_hold_account_id", "legal_hold", ["account_id"])


def drop_legal_hold_table() -> None:
    """In a revision's downgrade(): remove the participant kit's `legal_hold` table."""
    from alembic import op

    op.drop_index("ix_legal_hold_account_id", table_name="legal_hold")
    op.drop_table("legal_hold")
