"""integrations: third parties an account admin lets in with scopes; their API keys name them

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-23 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "integration",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String()), nullable=False),
        sa.Column("enabled_by_user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["enabled_by_user_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_integration_account_id", "integration", ["account_id"])
    op.create_index("ix_integration_enabled_by_user_id", "integration", ["enabled_by_user_id"])
    op.add_column("api_key", sa.Column("integration_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        "api_key_integration_id_fkey", "api_key", "integration", ["integration_id"], ["id"]
    )
    op.create_index("ix_api_key_integration_id", "api_key", ["integration_id"])


def downgrade() -> None:
    op.drop_index("ix_api_key_integration_id", "api_key")
    op.drop_constraint("api_key_integration_id_fkey", "api_key", type_="foreignkey")
    op.drop_column("api_key", "integration_id")
    op.drop_table("integration")
