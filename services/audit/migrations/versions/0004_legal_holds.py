"""legal holds (LAW): every service knows which accounts stand on hold, and no purge passes one

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 05:30:00
"""

from collections.abc import Sequence

from shared.migrations import create_legal_hold_table, drop_legal_hold_table

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_legal_hold_table()


def downgrade() -> None:
    drop_legal_hold_table()
