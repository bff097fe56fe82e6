"""the plan's sweep (PLAN-RETENTION): each swept table indexed by account and the time its
retention runs from, so a sweep reads only what is past its time

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 07:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SWEPT = {"outgoing_email": "created_at", "bounced_address": "bounced_at"}


def upgrade() -> None:
    for table, kept_from in SWEPT.items():
        op.create_index(f"ix_{table}_sweep", table, ["account_id", kept_from])


def downgrade() -> None:
    for table in SWEPT:
        op.drop_index(f"ix_{table}_sweep", table_name=table)
