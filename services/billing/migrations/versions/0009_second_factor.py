"""an optional second factor: TOTP secrets (sealed) and single-use recovery codes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 15:55:00
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
    op.add_column("app_user", sa.Column("totp_secret", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column("app_user", sa.Column("totp_pending", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column("app_user", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.create_table(
        "user_recovery_code",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_user_recovery_code_account_id"), "user_recovery_code", ["account_id"])
    op.create_index(op.f("ix_user_recovery_code_user_id"), "user_recovery_code", ["user_id"])


def downgrade() -> None:
    op.drop_table("user_recovery_code")
    for column in ("totp_last_step", "totp_pending", "totp_secret"):
        op.drop_column("app_user", column)
