"""scoped, named, expiring API keys with their last use

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_key", sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column("api_key", sa.Column("scopes", sa.ARRAY(sa.String()), nullable=True))
    op.add_column("api_key", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_key", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for column in ("last_used_at", "expires_at", "scopes", "name"):
        op.drop_column("api_key", column)
