"""security notices are a transactional kind of message (USE)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 15:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE messagekind ADD VALUE IF NOT EXISTS 'SECURITY_NOTICE'")


def downgrade() -> None:
    # Postgres cannot drop an enum value: SECURITY_NOTICE stays in the type; its messages go.
    op.execute("DELETE FROM outgoing_email WHERE kind = 'SECURITY_NOTICE'")
