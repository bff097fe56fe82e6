"""the plan's sweep (PLAN-RETENTION): each swept table indexed by account and the time its
retention runs from, so a sweep reads only what is past its time

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-23 07:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SWEPT = {
    "email_delivery": "changed_at",
    "webhook_delivery": "created_at",
    "web_session": "last_seen_at",
    "sign_in_failure": "created_at",
}


def upgrade() -> None:
    for table, kept_from in SWEPT.items():
        op.create_index(f"ix_{table}_sweep", table, ["account_id", kept_from])


def downgrade() -> None:
    for table in SWEPT:
        op.drop_index(f"ix_{table}_sweep", table_name=table)
