"""legal holds (LAW): every service knows which accounts stand on hold, and no purge passes one

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.migrations import create_legal_hold_table, drop_legal_hold_table

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A termination whose export went out waits here while a legal hold stands.
    op.execute("ALTER TYPE sagastatus ADD VALUE IF NOT EXISTS 'HELD'")
    create_legal_hold_table()
    op.add_column(
        "termination_saga",
        sa.Column(
            "waiting_for_holds",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default="[]",
        ),
    )


def downgrade() -> None:
    op.drop_column("termination_saga", "waiting_for_holds")
    drop_legal_hold_table()
