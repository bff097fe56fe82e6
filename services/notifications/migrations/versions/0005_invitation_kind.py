"""invitations are a transactional kind of message (USE)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 15:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE messagekind ADD VALUE IF NOT EXISTS 'INVITATION'")


def downgrade() -> None:
    # Postgres cannot drop an enum value: INVITATION stays in the type; its messages go.
    op.execute("DELETE FROM outgoing_email WHERE kind = 'INVITATION'")
