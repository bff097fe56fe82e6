"""index the email a bundle's chunks complete (looked up for every chunk)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_outgoing_email_attachment_transfer_id", "outgoing_email", ["attachment_transfer_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_outgoing_email_attachment_transfer_id", table_name="outgoing_email")
