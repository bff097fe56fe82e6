"""staff as their own population (roles, a password chosen with an enrolment code, sessions);
failed re-authentications counted with failed sign-ins; a session's approximate location

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.add_column(
        "staff_member",
        sa.Column("roles", sa.ARRAY(sa.String()), nullable=False, server_default="{}"),
    )
    op.add_column("staff_member", sa.Column("password_hash", _TEXT(), nullable=True))
    op.add_column("staff_member", sa.Column("enrolment_hash", _TEXT(), nullable=True))
    op.add_column(
        "staff_member",
        sa.Column("enrolment_expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "staff_member", sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_unique_constraint(
        "staff_member_enrolment_hash_key", "staff_member", ["enrolment_hash"]
    )
    for table in ("web_session", "sign_in_failure"):
        op.add_column(table, sa.Column("staff_id", sa.Uuid(), nullable=True))
        op.create_foreign_key(
            f"{table}_staff_id_fkey", table, "staff_member", ["staff_id"], ["id"]
        )
        op.create_index(op.f(f"ix_{table}_staff_id"), table, ["staff_id"])
    # Approximate location of a session, when a GeoIP database is configured (COLLECTED).
    op.add_column("web_session", sa.Column("location", _TEXT(), nullable=True))
    # The email a failed sign-in tried, hashed: unknown addresses are throttled like known ones.
    op.add_column("sign_in_failure", sa.Column("email_digest", _TEXT(), nullable=True))
    op.create_index(op.f("ix_sign_in_failure_email_digest"), "sign_in_failure", ["email_digest"])
    # A user's last sign-in: new-device notices outlive the sessions retention deletes.
    op.add_column("app_user", sa.Column("signed_in_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE app_user u SET signed_in_at = s.last FROM "
        "(SELECT user_id, max(created_at) AS last FROM web_session GROUP BY user_id) s "
        "WHERE s.user_id = u.id"
    )
    # A failed re-authentication counts against its user like a sign-in, and has no address.
    op.alter_column("sign_in_failure", "address", existing_type=_TEXT(), nullable=True)
    # Staff sign in with a password now; the bearer keys the operator once made stop at once.
    op.execute("UPDATE api_key SET revoked_at = now() WHERE staff_id IS NOT NULL AND revoked_at IS NULL")


def downgrade() -> None:
    op.drop_index(op.f("ix_sign_in_failure_email_digest"), table_name="sign_in_failure")
    op.drop_column("sign_in_failure", "email_digest")
    op.drop_column("app_user", "signed_in_at")
    op.drop_column("web_session", "location")
    op.execute("DELETE FROM sign_in_failure WHERE address IS NULL")
    op.alter_column("sign_in_failure", "address", existing_type=_TEXT(), nullable=False)
    for table in ("sign_in_failure", "web_session"):
        op.drop_index(op.f(f"ix_{table}_staff_id"), table_name=table)
        op.drop_constraint(f"{table}_staff_id_fkey", table, type_="foreignkey")
        op.drop_column(table, "staff_id")
    op.drop_constraint("staff_member_enrolment_hash_key", "staff_member", type_="unique")
    for column in ("removed_at", "enrolment_expires_at", "enrolment_hash", "password_hash", "roles"):
        op.drop_column("staff_member", column)
