"""an access log entry says whether the read was granted or refused (STAFF-ACCESS)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "access_log_entry",
        sa.Column(
            "outcome", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="granted"
        ),
    )


def downgrade() -> None:
    op.drop_column("access_log_entry", "outcome")
