"""idempotency keys: each caller's claimed keys and the answers kept to replay for a day

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_record",
        sa.Column("caller_digest", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("replayable", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("caller_digest", "key"),
    )
    op.create_index("ix_idempotency_record_account_id", "idempotency_record", ["account_id"])
    op.create_index("ix_idempotency_record_created_at", "idempotency_record", ["created_at"])
    op.create_index(
        "ix_idempotency_record_claim_token", "idempotency_record", ["claim_token"], unique=True
    )


def downgrade() -> None:
    op.drop_table("idempotency_record")
