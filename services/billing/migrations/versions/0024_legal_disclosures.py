"""legal disclosures (LAW): what was given, to whom, under which basis, by whom

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-23 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "legal_disclosure",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("legal_basis", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("what", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("disclosed_by", sa.Uuid(), nullable=False),
        sa.Column("disclosed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_legal_disclosure_account_id", "legal_disclosure", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_legal_disclosure_account_id", table_name="legal_disclosure")
    op.drop_table("legal_disclosure")
