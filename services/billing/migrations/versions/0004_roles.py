"""the four account roles: owner, admin, accountant, read-only (LEAST-ACCESS)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A member could draft and issue invoices: an accountant now.
    op.execute("ALTER TYPE role RENAME VALUE 'MEMBER' TO 'ACCOUNTANT'")
    op.execute("ALTER TYPE role ADD VALUE IF NOT EXISTS 'READ_ONLY'")


def downgrade() -> None:
    # Postgres cannot drop an enum value: READ_ONLY stays in the type, unused.
    op.execute("UPDATE app_user SET role = 'ACCOUNTANT' WHERE role = 'READ_ONLY'")
    op.execute("ALTER TYPE role RENAME VALUE 'ACCOUNTANT' TO 'MEMBER'")
