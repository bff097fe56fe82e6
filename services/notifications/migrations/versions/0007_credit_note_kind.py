"""credit notes are a transactional kind of message (USE)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 21:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE messagekind ADD VALUE IF NOT EXISTS 'CREDIT_NOTE'")


def downgrade() -> None:
    # Postgres cannot drop an enum value: CREDIT_NOTE stays in the type; its messages go.
    op.execute("DELETE FROM outgoing_email WHERE kind = 'CREDIT_NOTE'")
