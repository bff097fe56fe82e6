"""index the foreign keys a purge checks (deleting a customer must not scan every invoice)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_invoice_customer_id", "invoice", "customer_id"),
    ("ix_api_key_user_id", "api_key", "user_id"),
    ("ix_access_grant_granted_by_user_id", "access_grant", "granted_by_user_id"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
