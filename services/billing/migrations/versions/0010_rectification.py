"""rectification: the account's billing details, the parties an issued invoice keeps, change records

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
PARTIES = (
    "seller_name",
    "seller_address",
    "seller_tax_id",
    "customer_name",
    "customer_email",
    "customer_address",
)


def upgrade() -> None:
    op.add_column("account", sa.Column("address", _TEXT(), nullable=True))
    op.add_column("account", sa.Column("tax_id", _TEXT(), nullable=True))
    op.add_column(
        "account", sa.Column("currency", _TEXT(length=3), nullable=False, server_default="EUR")
    )
    op.add_column("account", sa.Column("locale", _TEXT(), nullable=False, server_default="en"))
    op.add_column("account", sa.Column("time_zone", _TEXT(), nullable=False, server_default="UTC"))
    for column in PARTIES:
        op.add_column("invoice", sa.Column(column, _TEXT(), nullable=True))
    # Invoices issued before snapshots existed print the details as they stand now: the best known.
    op.execute(
        """
        UPDATE invoice i SET seller_name = a.name, seller_address = a.address,
            seller_tax_id = a.tax_id, customer_name = c.name, customer_email = c.email,
            customer_address = c.address
        FROM account a, customer c
        WHERE i.status = 'ISSUED' AND a.id = i.account_id AND c.id = i.customer_id
        """
    )
    op.create_table(
        "change_record",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column(
            "subject",
            sa.Enum("ACCOUNT", "USER", "CUSTOMER", name="changesubject"),
            nullable=False,
        ),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("fields", sa.ARRAY(sa.String()), nullable=False),
        sa.Column("changed_by_user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.ForeignKeyConstraint(["changed_by_user_id"], ["app_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_change_record_account_id"), "change_record", ["account_id"])
    op.create_index(
        op.f("ix_change_record_changed_by_user_id"), "change_record", ["changed_by_user_id"]
    )


def downgrade() -> None:
    op.drop_table("change_record")
    sa.Enum(name="changesubject").drop(op.get_bind(), checkfirst=True)
    for column in PARTIES:
        op.drop_column("invoice", column)
    for column in ("time_zone", "locale", "currency", "tax_id", "address"):
        op.drop_column("account", column)
