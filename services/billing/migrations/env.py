"""Alembic environment of billing: its own tables plus the shared outbox and inbox."""

from billing.models import BillingTable
from shared.migrations import run_migrations

run_migrations(BillingTable.metadata)
