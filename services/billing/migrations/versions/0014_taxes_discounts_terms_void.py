"""per-line discounts and tax rates with the invoice's subtotal and tax total; payment terms
(an account default, a draft's terms, its due date set at issue); void invoices; totals wide
enough for 500 lines of the largest amount taxed at 100%

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-22 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ZERO = sa.text("0")


def upgrade() -> None:
    op.execute("ALTER TYPE invoicestatus ADD VALUE IF NOT EXISTS 'VOID'")
    op.alter_column("invoice", "total", type_=sa.Numeric(20, 4))
    op.add_column(
        "invoice", sa.Column("subtotal", sa.Numeric(20, 4), nullable=False, server_default=_ZERO)
    )
    op.add_column(
        "invoice", sa.Column("tax_total", sa.Numeric(20, 4), nullable=False, server_default=_ZERO)
    )
    op.execute("UPDATE invoice SET subtotal = total")  # before taxes, the total was the net
    # The defaults filled the rows there were; a new row states its sums, or is refused.
    op.alter_column("invoice", "subtotal", server_default=None)
    op.alter_column("invoice", "tax_total", server_default=None)
    op.alter_column("invoice", "due_date", nullable=True)
    op.add_column("invoice", sa.Column("payment_terms_days", sa.Integer(), nullable=True))
    op.add_column("invoice", sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("invoice", sa.Column("void_reason", sa.String(), nullable=True))
    for column, numeric in (
        ("discount_percent", sa.Numeric(7, 4)),
        ("discount_amount", sa.Numeric(18, 4)),
        ("tax_rate", sa.Numeric(7, 4)),
    ):
        op.add_column(
            "invoice_line", sa.Column(column, numeric, nullable=False, server_default=_ZERO)
        )
    for column in ("discount_percent", "discount_amount", "tax_rate"):
        op.alter_column("invoice_line", column, server_default=None)
    op.add_column(
        "account",
        sa.Column(
            "payment_terms_days", sa.Integer(), nullable=False, server_default=sa.text("30")
        ),
    )


def downgrade() -> None:
    # Lossy, as going back is: void invoices read as issued, drafts on terms get a due date.
    op.execute(
        "UPDATE invoice SET due_date = COALESCE(issue_date, current_date) + payment_terms_days "
        "WHERE due_date IS NULL"
    )
    op.execute("UPDATE invoice SET status = 'ISSUED' WHERE status = 'VOID'")
    op.drop_column("account", "payment_terms_days")
    for column in ("tax_rate", "discount_amount", "discount_percent"):
        op.drop_column("invoice_line", column)
    for column in ("void_reason", "voided_at", "payment_terms_days", "tax_total", "subtotal"):
        op.drop_column("invoice", column)
    op.alter_column("invoice", "due_date", nullable=False)
    op.alter_column("invoice", "total", type_=sa.Numeric(18, 4))
