"""request metadata of sessions: address, browser, operating system, referrer (COLLECTED)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("ip_address", "browser", "operating_system", "referrer")


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column(
            "web_session", sa.Column(column, sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_column("web_session", column)
