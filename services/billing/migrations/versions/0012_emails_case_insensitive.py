"""an email is one address whatever its case: a user per account and a staff member per address,
and sign-in finds them by an index instead of scanning every user

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22 19:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The unique indexes keep the constraints' names: the services recognise conflicts by them.
    op.drop_constraint("app_user_account_id_email_key", "app_user", type_="unique")
    op.execute(
        "CREATE UNIQUE INDEX app_user_account_id_email_key ON app_user (account_id, lower(email))"
    )
    op.execute("CREATE INDEX ix_app_user_email_lower ON app_user (lower(email))")
    op.drop_constraint("staff_member_email_key", "staff_member", type_="unique")
    op.execute("CREATE UNIQUE INDEX staff_member_email_key ON staff_member (lower(email))")


def downgrade() -> None:
    op.drop_index("staff_member_email_key", table_name="staff_member")
    op.create_unique_constraint("staff_member_email_key", "staff_member", ["email"])
    op.drop_index("ix_app_user_email_lower", table_name="app_user")
    op.drop_index("app_user_account_id_email_key", table_name="app_user")
    op.create_unique_constraint("app_user_account_id_email_key", "app_user", ["account_id", "email"])
