"""customers' tax ids, notes and contacts; the customer's tax id in invoices' snapshots

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-22 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.add_column("customer", sa.Column("tax_id", _TEXT(), nullable=True))
    op.add_column("customer", sa.Column("notes", _TEXT(), nullable=True))
    op.add_column("invoice", sa.Column("customer_tax_id", _TEXT(), nullable=True))
    op.create_table(
        "customer_contact",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("name", _TEXT(), nullable=False),
        sa.Column("email", _TEXT(), nullable=False),
        sa.Column("role", _TEXT(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customer_contact_account_id", "customer_contact", ["account_id"])
    op.create_index("ix_customer_contact_customer_id", "customer_contact", ["customer_id"])


def downgrade() -> None:
    op.drop_table("customer_contact")
    op.drop_column("invoice", "customer_tax_id")
    op.drop_column("customer", "notes")
    op.drop_column("customer", "tax_id")
