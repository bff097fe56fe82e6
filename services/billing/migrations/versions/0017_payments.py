"""payments through a gateway: checkout pages, payments and refunds from verified webhooks, the
webhook inbox, customer credit; invoices partially paid and paid

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-22 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_MONEY = sa.Numeric(20, 4)
_REFUND_STATUS = sa.Enum("REQUESTED", "SUCCEEDED", "FAILED", name="refundstatus")
_CREDIT_KIND = sa.Enum("OVERPAYMENT", "CREDIT_NOTE", "APPLIED", "REFUNDED", name="creditkind")


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(f"ix_{table}_{column}", table, [column])


def upgrade() -> None:
    op.execute("ALTER TYPE invoicestatus ADD VALUE IF NOT EXISTS 'PARTIALLY_PAID'")
    op.execute("ALTER TYPE invoicestatus ADD VALUE IF NOT EXISTS 'PAID'")
    op.add_column(
        "invoice", sa.Column("amount_paid", _MONEY, nullable=False, server_default=sa.text("0"))
    )
    # A backstop under the service's own rule: an overpayment is credit, never "paid".
    op.create_check_constraint(
        "ck_invoice_paid_within_due",
        "invoice",
        "amount_paid >= 0 AND amount_paid + credited_total <= total",
    )
    op.create_table(
        "payment_checkout",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("gateway", _TEXT(), nullable=False),
        sa.Column("gateway_session_id", _TEXT(), nullable=True),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("currency", _TEXT(length=3), nullable=False),
        sa.Column("url", _TEXT(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gateway", "gateway_session_id"),
    )
    _indexes("payment_checkout", "account_id", "invoice_id")
    op.create_table(
        "payment",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("checkout_id", sa.Uuid(), nullable=False),
        sa.Column("gateway", _TEXT(), nullable=False),
        sa.Column("gateway_payment_id", _TEXT(), nullable=False),
        sa.Column("currency", _TEXT(length=3), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("applied_amount", _MONEY, nullable=False),
        sa.Column("credit_amount", _MONEY, nullable=False),
        sa.Column("refunded_amount", _MONEY, nullable=False, server_default=sa.text("0")),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.ForeignKeyConstraint(["checkout_id"], ["payment_checkout.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gateway", "gateway_payment_id"),
        sa.CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refunds_within_payment"),
    )
    _indexes("payment", "account_id", "invoice_id", "customer_id", "checkout_id")
    op.create_table(
        "payment_refund",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("gateway", _TEXT(), nullable=False),
        sa.Column("gateway_refund_id", _TEXT(), nullable=True),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("status", _REFUND_STATUS, nullable=False),
        sa.Column("reason", _TEXT(), nullable=True),
        sa.Column("from_credit", _MONEY, nullable=True),
        sa.Column("from_invoice", _MONEY, nullable=True),
        sa.Column("requested_by_user_id", sa.Uuid(), nullable=True),
        _created_at(),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payment.id"]),
        sa.ForeignKeyConstraint(["requested_by_user_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gateway", "gateway_refund_id"),
    )
    _indexes("payment_refund", "account_id", "payment_id", "requested_by_user_id")
    op.create_table(
        "customer_credit",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("currency", _TEXT(length=3), nullable=False),
        sa.Column("amount", _MONEY, nullable=False),
        sa.Column("kind", _CREDIT_KIND, nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("credit_note_id", sa.Uuid(), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payment.id"]),
        sa.ForeignKeyConstraint(["refund_id"], ["payment_refund.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"]),
        sa.ForeignKeyConstraint(["credit_note_id"], ["credit_note.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    _indexes(
        "customer_credit",
        "account_id",
        "customer_id",
        "payment_id",
        "refund_id",
        "invoice_id",
        "credit_note_id",
    )
    op.create_table(
        "gateway_webhook",
        sa.Column("gateway", _TEXT(), nullable=False),
        sa.Column("event_id", _TEXT(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", _TEXT(), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("gateway", "event_id"),
    )
    _indexes("gateway_webhook", "account_id")


def downgrade() -> None:
    for table in (
        "gateway_webhook",
        "customer_credit",
        "payment_refund",
        "payment",
        "payment_checkout",
    ):
        op.drop_table(table)
    _REFUND_STATUS.drop(op.get_bind(), checkfirst=True)
    _CREDIT_KIND.drop(op.get_bind(), checkfirst=True)
    op.drop_constraint("ck_invoice_paid_within_due", "invoice", type_="check")
    op.drop_column("invoice", "amount_paid")
    # Lossy, as going back is: paid invoices read as issued.
    op.execute("UPDATE invoice SET status = 'ISSUED' WHERE status IN ('PARTIALLY_PAID', 'PAID')")
