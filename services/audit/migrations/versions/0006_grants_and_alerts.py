"""access grants as billing announces them (reads are checked against them) and alerts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_grant_mark",
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("grant_id"),
    )
    op.create_index("ix_access_grant_mark_account_id", "access_grant_mark", ["account_id"])
    op.create_table(
        "audit_alert",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("actor_id", sa.String(), nullable=False),
        sa.Column("once_key", sa.String(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("once_key"),
    )
    # The alert's count: one staff member's reads in the last hour.
    op.create_index("ix_audit_entry_actor_time", "audit_entry", ["actor_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_entry_actor_time", table_name="audit_entry")
    op.drop_table("audit_alert")
    op.drop_index("ix_access_grant_mark_account_id", table_name="access_grant_mark")
    op.drop_table("access_grant_mark")
