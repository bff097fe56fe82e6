"""Alembic environment of retention: its own tables plus the shared outbox and inbox."""

from retention.models import RetentionTable
from shared.migrations import run_migrations

run_migrations(RetentionTable.metadata)
