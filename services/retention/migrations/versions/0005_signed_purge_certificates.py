"""purge certificates signed with Ed25519, naming the export's manifest and each purge's time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("termination_saga", sa.Column("manifest_sha256", sa.String(), nullable=True))
    op.add_column(
        "termination_saga",
        sa.Column(
            "purged_at",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default="{}",
        ),
    )
    # Certificates issued before signing keep their digest and stay unsigned (null).
    op.add_column("purge_certificate", sa.Column("payload", sa.Text(), nullable=True))
    op.add_column("purge_certificate", sa.Column("signature", sa.String(), nullable=True))
    op.add_column("purge_certificate", sa.Column("signing_key_id", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("purge_certificate", "signing_key_id")
    op.drop_column("purge_certificate", "signature")
    op.drop_column("purge_certificate", "payload")
    op.drop_column("termination_saga", "purged_at")
    op.drop_column("termination_saga", "manifest_sha256")
