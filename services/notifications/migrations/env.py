"""Alembic environment of notifications: its own tables plus the shared outbox and inbox."""

from notifications.models import NotificationsTable
from shared.migrations import run_migrations

run_migrations(NotificationsTable.metadata)
