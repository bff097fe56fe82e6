"""credit notes in their own gapless series per account, with their lines; what each invoice
has had credited

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-22 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_ZERO = sa.text("0")


def upgrade() -> None:
    op.add_column(
        "account",
        sa.Column(
            "next_credit_note_number", sa.Integer(), nullable=False, server_default=sa.text("1")
        ),
    )
    op.add_column(
        "invoice",
        sa.Column("credited_total", sa.Numeric(20, 4), nullable=False, server_default=_ZERO),
    )
    # A backstop under the service's own check: never more credited than invoiced.
    op.create_check_constraint(
        "ck_invoice_credited_within_total", "invoice", "credited_total BETWEEN 0 AND total"
    )
    op.create_table(
        "credit_note",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("number", _TEXT(), nullable=False),
        sa.Column("currency", _TEXT(length=3), nullable=False),
        sa.Column("reason", _TEXT(), nullable=False),
        sa.Column("subtotal", sa.Numeric(20, 4), nullable=False),
        sa.Column("tax_total", sa.Numeric(20, 4), nullable=False),
        sa.Column("total", sa.Numeric(20, 4), nullable=False),
        sa.Column("taxes", postgresql.JSONB(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("seller_name", _TEXT(), nullable=False),
        sa.Column("seller_address", _TEXT(), nullable=True),
        sa.Column("seller_tax_id", _TEXT(), nullable=True),
        sa.Column("customer_name", _TEXT(), nullable=False),
        sa.Column("customer_email", _TEXT(), nullable=False),
        sa.Column("customer_address", _TEXT(), nullable=True),
        sa.Column("customer_tax_id", _TEXT(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "number"),
    )
    for column in ("account_id", "invoice_id", "customer_id"):
        op.create_index(f"ix_credit_note_{column}", "credit_note", [column])
    op.create_table(
        "credit_note_line",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("credit_note_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_line_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_line_position", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", _TEXT(), nullable=False),
        sa.Column("quantity", sa.Numeric(18, 4), nullable=False),
        sa.Column("unit_price", sa.Numeric(18, 4), nullable=False),
        sa.Column("amount", sa.Numeric(18, 4), nullable=False),
        sa.Column("discount_percent", sa.Numeric(7, 4), nullable=False),
        sa.Column("discount_amount", sa.Numeric(18, 4), nullable=False),
        sa.Column("tax_rate", sa.Numeric(7, 4), nullable=False),
        sa.ForeignKeyConstraint(["credit_note_id"], ["credit_note.id"]),
        sa.ForeignKeyConstraint(["invoice_line_id"], ["invoice_line.id"]),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("credit_note_id", "account_id", "invoice_line_id"):
        op.create_index(f"ix_credit_note_line_{column}", "credit_note_line", [column])


def downgrade() -> None:
    op.drop_table("credit_note_line")
    op.drop_table("credit_note")
    op.drop_constraint("ck_invoice_credited_within_total", "invoice", type_="check")
    op.drop_column("invoice", "credited_total")
    op.drop_column("account", "next_credit_note_number")
