"""payment receipts and reminders, retries with bounces, the accounts' mail settings

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TYPE messagekind ADD VALUE IF NOT EXISTS 'PAYMENT_RECEIPT'")
    for status in ("BOUNCED", "SUPPRESSED", "CANCELLED"):
        op.execute(f"ALTER TYPE emailstatus ADD VALUE IF NOT EXISTS '{status}'")
    op.add_column("outgoing_email", sa.Column("document_id", sa.Uuid(), nullable=True))
    op.add_column(
        "outgoing_email",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outgoing_email_document_id", "outgoing_email", ["document_id"])
    op.create_index(
        "ix_outgoing_email_queued_due",
        "outgoing_email",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'QUEUED'"),
    )
    op.create_table(
        "bounced_address",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "address"),
    )
    op.create_table(
        "account_mail_settings",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("account_name", sa.String(), nullable=False),
        sa.Column("locale", sa.String(), nullable=False),
        sa.Column("time_zone", sa.String(), nullable=False),
        sa.Column("logo_url", sa.String(), nullable=True),
        sa.Column("reminders", sa.JSON(), nullable=True),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("terminated", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "reminder_invoice",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(), nullable=False),
        sa.Column("customer_name", sa.String(), nullable=False),
        sa.Column("customer_email", sa.String(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("total", sa.Numeric(18, 4), nullable=False),
        sa.Column("credited", sa.Numeric(18, 4), nullable=False),
        sa.Column("paid", sa.Numeric(18, 4), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("OPEN", "PAID", "VOIDED", "CREDITED", "TERMINATED", name="reminderstate"),
            nullable=False,
        ),
        sa.Column("last_stage", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("invoice_id"),
    )
    op.create_index("ix_reminder_invoice_account_id", "reminder_invoice", ["account_id"])
    op.create_index(
        "ix_reminder_invoice_open_due",
        "reminder_invoice",
        ["due_date"],
        postgresql_where=sa.text("state = 'OPEN'"),
    )
    op.create_table(
        "reminder_sent",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("email_id", sa.Uuid(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id", "stage"),
    )
    op.create_index("ix_reminder_sent_account_id", "reminder_sent", ["account_id"])


def downgrade() -> None:
    op.drop_table("reminder_sent")
    op.drop_table("reminder_invoice")
    op.execute("DROP TYPE reminderstate")
    op.drop_table("account_mail_settings")
    op.drop_table("bounced_address")
    op.drop_index("ix_outgoing_email_queued_due", table_name="outgoing_email")
    op.drop_index("ix_outgoing_email_document_id", table_name="outgoing_email")
    op.drop_column("outgoing_email", "next_attempt_at")
    op.drop_column("outgoing_email", "document_id")
