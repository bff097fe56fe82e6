"""the purge certificate is emailed to the owner: its kind, and where it goes until it is sent

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 05:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE messagekind ADD VALUE IF NOT EXISTS 'PURGE_CERTIFICATE'")
    op.create_table(
        "certificate_recipient",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("account_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("time_zone", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )


def downgrade() -> None:
    op.drop_table("certificate_recipient")
    # Postgres cannot drop an enum value: PURGE_CERTIFICATE stays; its messages go.
    op.execute("DELETE FROM outgoing_email WHERE kind = 'PURGE_CERTIFICATE'")
