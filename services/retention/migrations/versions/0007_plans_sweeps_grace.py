"""retention by plan (PLAN-RETENTION): accounts' plans, sweeps and their tallies; the grace
period after termination with its export link

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE sagastatus ADD VALUE IF NOT EXISTS 'GRACE'")
    op.add_column("termination_saga", sa.Column("plan", sa.String(), nullable=True))
    op.add_column(
        "termination_saga", sa.Column("purge_due_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "termination_saga",
        sa.Column("downloads", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "account_plan",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("plan", sa.String(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "retention_sweep",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("expected_reports", sa.Integer(), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("held_reports", sa.Integer(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slot"),
    )
    op.create_table(
        "sweep_tally",
        sa.Column("sweep_id", sa.Uuid(), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("table_name", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("oldest_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["sweep_id"], ["retention_sweep.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sweep_id", "service", "table_name"),
    )


def downgrade() -> None:
    op.drop_table("sweep_tally")
    op.drop_table("retention_sweep")
    op.drop_table("account_plan")
    op.drop_column("termination_saga", "downloads")
    op.drop_column("termination_saga", "purge_due_at")
    op.drop_column("termination_saga", "plan")
