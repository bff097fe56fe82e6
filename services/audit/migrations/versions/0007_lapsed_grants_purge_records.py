"""grants' lapses noted in the trail; purge certificates chained into the global chain

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "access_grant_mark",
        sa.Column("expiry_recorded", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "purge_record",
        sa.Column("global_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_reference", sa.String(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("certificate_id", sa.Uuid(), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("certificate_sha256", sa.String(), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
        sa.Column("signing_key_id", sa.String(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("global_seq"),
        sa.UniqueConstraint("account_reference"),
        sa.UniqueConstraint("event_id"),
    )


def downgrade() -> None:
    op.drop_table("purge_record")
    op.drop_column("access_grant_mark", "expiry_recorded")
