"""users: invitations, status, removal, one owner per account (LEAST-ACCESS)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 15:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    status = sa.Enum("INVITED", "ACTIVE", name="userstatus")
    status.create(op.get_bind())
    op.add_column(
        "app_user", sa.Column("status", status, nullable=False, server_default="ACTIVE")
    )
    op.alter_column("app_user", "status", server_default=None)
    op.add_column("app_user", sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "uq_app_user_one_owner",
        "app_user",
        ["account_id"],
        unique=True,
        postgresql_where=sa.text("role = 'OWNER'"),
    )
    op.create_table(
        "user_invitation",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(op.f("ix_user_invitation_account_id"), "user_invitation", ["account_id"])
    op.create_index(op.f("ix_user_invitation_user_id"), "user_invitation", ["user_id"])


def downgrade() -> None:
    op.drop_table("user_invitation")
    op.drop_index("uq_app_user_one_owner", table_name="app_user")
    op.drop_column("app_user", "removed_at")
    op.drop_column("app_user", "status")
    sa.Enum(name="userstatus").drop(op.get_bind())
