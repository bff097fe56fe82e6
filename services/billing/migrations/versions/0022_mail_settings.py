"""the account's logo, payment reminder schedule and quiet hours; the email delivery log

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-23 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("account", sa.Column("logo_url", sa.String(), nullable=True))
    op.add_column("account", sa.Column("reminders", postgresql.JSONB(), nullable=True))
    op.add_column("account", sa.Column("quiet_hours", postgresql.JSONB(), nullable=True))
    op.create_table(
        "email_delivery",
        sa.Column("email_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("document_id", sa.Uuid(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("email_id"),
    )
    op.create_index(
        "ix_email_delivery_account_changed", "email_delivery", ["account_id", "changed_at"]
    )
    op.create_index("ix_email_delivery_document_id", "email_delivery", ["document_id"])


def downgrade() -> None:
    op.drop_table("email_delivery")
    op.drop_column("account", "quiet_hours")
    op.drop_column("account", "reminders")
    op.drop_column("account", "logo_url")
