"""saga deadlines, chunked slices, destroyed keys on the certificate

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("termination_saga", "export_key")
    op.drop_column("termination_saga", "bundle_key")
    op.add_column("termination_saga", sa.Column("bundle_transfer_id", sa.Uuid(), nullable=True))
    op.add_column("termination_saga", sa.Column("bundle_size", sa.BigInteger(), nullable=True))
    op.add_column(
        "termination_saga",
        sa.Column("step_attempt", sa.Integer(), nullable=False, server_default="1"),
    )
    op.add_column(
        "termination_saga",
        sa.Column(
            "step_deadline_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.add_column(
        "termination_saga",
        sa.Column("needs_attention", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    )
    op.create_index("ix_termination_saga_step_deadline_at", "termination_saga", ["step_deadline_at"])
    op.add_column(
        "purge_certificate",
        sa.Column(
            "destroyed_keys",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default="[]",
        ),
    )


def downgrade() -> None:
    op.drop_column("purge_certificate", "destroyed_keys")
    op.drop_index("ix_termination_saga_step_deadline_at", table_name="termination_saga")
    for column in ("needs_attention", "step_deadline_at", "step_attempt", "bundle_size"):
        op.drop_column("termination_saga", column)
    op.drop_column("termination_saga", "bundle_transfer_id")
    op.add_column("termination_saga", sa.Column("bundle_key", sa.String(), nullable=True))
    op.add_column(
        "termination_saga",
        sa.Column("export_key", sa.String(), nullable=False, server_default=""),
    )
