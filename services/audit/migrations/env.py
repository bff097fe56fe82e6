"""Alembic environment of audit: its own tables plus the shared outbox and inbox."""

from audit.models import AuditTable
from shared.migrations import run_migrations

run_migrations(AuditTable.metadata)
