"""recurring invoices: schedules and the periods they issued (unique per schedule and period)

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-23 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_INTERVAL = sa.Enum("WEEK", "MONTH", "YEAR", name="recurrenceinterval")
_STATUS = sa.Enum("ACTIVE", "PAUSED", "ENDED", name="schedulestatus")


def upgrade() -> None:
    op.create_table(
        "recurring_invoice",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("currency", _TEXT(length=3), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=True),
        sa.Column("lines", postgresql.JSONB(), nullable=False),
        sa.Column("interval", _INTERVAL, nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("periods_done", sa.Integer(), nullable=False),
        sa.Column("next_run_on", sa.Date(), nullable=True),
        sa.Column("status", _STATUS, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", _TEXT(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("account_id", "customer_id", "next_run_on"):
        op.create_index(f"ix_recurring_invoice_{column}", "recurring_invoice", [column])
    op.create_table(
        "recurring_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["schedule_id"], ["recurring_invoice.id"]),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoice.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "period"),
    )
    for column in ("account_id", "schedule_id", "invoice_id"):
        op.create_index(f"ix_recurring_run_{column}", "recurring_run", [column])


def downgrade() -> None:
    op.drop_table("recurring_run")
    op.drop_table("recurring_invoice")
    _STATUS.drop(op.get_bind(), checkfirst=True)
    _INTERVAL.drop(op.get_bind(), checkfirst=True)
