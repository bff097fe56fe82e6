"""the export email's attachment arrives in chunks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outgoing_email", sa.Column("attachment_transfer_id", sa.Uuid(), nullable=True))
    op.add_column("outgoing_email", sa.Column("attachment_chunks", sa.Integer(), nullable=True))
    op.add_column(
        "outgoing_email",
        sa.Column("attachment_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    )
    op.add_column(
        "outgoing_email",
        sa.Column("attachment_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    )
    op.create_index("ix_outgoing_email_saga_id", "outgoing_email", ["saga_id"])


def downgrade() -> None:
    op.drop_index("ix_outgoing_email_saga_id", table_name="outgoing_email")
    for column in (
        "attachment_sha256",
        "attachment_name",
        "attachment_chunks",
        "attachment_transfer_id",
    ):
        op.drop_column("outgoing_email", column)
