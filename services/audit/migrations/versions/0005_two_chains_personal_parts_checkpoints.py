"""the trail in two chains (per account and global) with personal parts apart, committed to
with a salt, signed checkpoints and purged accounts' references; the old single-chain rows are
carried over in the order they were recorded, re-chained

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 08:40:00
"""

import secrets
from collections.abc import Sequence
from datetime import UTC

import sqlalchemy as sa
from alembic import op

from audit.domain import (
    GENESIS_HASH,
    account_reference,
    entry_digest,
    link,
    personal_commitment,
)
from audit.models import AuditEntry

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = {"hold-placed": "legal-hold-placed", "hold-released": "legal-hold-released"}


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("global_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("account_seq", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("actor_type", sa.String(), nullable=False),
        sa.Column("actor_id", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("resource_type", sa.String(), nullable=False),
        sa.Column("resource_id", sa.String(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("personal_commitment", sa.String(), nullable=False),
        sa.Column("account_previous_hash", sa.String(), nullable=False),
        sa.Column("account_hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("global_seq"),
        sa.UniqueConstraint("account_id", "account_seq"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_audit_entry_account_id", "audit_entry", ["account_id"])
    op.create_table(
        "audit_personal",
        sa.Column("global_seq", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("salt", sa.String(), nullable=False),
        sa.Column("actor_name", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["global_seq"], ["audit_entry.global_seq"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("global_seq"),
    )
    op.create_index("ix_audit_personal_account_id", "audit_personal", ["account_id"])
    op.create_table(
        "chain_link",
        sa.Column("global_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_reference", sa.String(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("previous_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("global_seq"),
    )
    op.create_index("ix_chain_link_account_reference", "chain_link", ["account_reference"])
    op.create_table(
        "audit_checkpoint",
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("global_seq", sa.BigInteger(), nullable=False),
        sa.Column("global_hash", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("signature", sa.String(), nullable=False),
        sa.Column("signing_key_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "purged_account",
        sa.Column("account_reference", sa.String(), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_reference"),
    )
    _carry_over()
    op.drop_index("ix_access_log_entry_account_id", table_name="access_log_entry")
    op.drop_table("access_log_entry")


def _carry_over() -> None:
    """Re-chain the old rows, oldest recorded first (the key is the service's own setting)."""
    from audit.settings import AuditSettings

    key = AuditSettings().reference_key.get_secret_value().encode()
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT * FROM access_log_entry ORDER BY recorded_at, account_id, sequence")
    ).mappings()
    global_previous, account_heads = GENESIS_HASH, {}
    for global_seq, row in enumerate(rows, start=1):
        account_seq, account_previous = account_heads.get(row["account_id"], (0, GENESIS_HASH))
        salt = secrets.token_hex(16)
        entry = AuditEntry(
            global_seq=global_seq,
            account_id=row["account_id"],
            account_seq=account_seq + 1,
            event_id=row["event_id"],
            kind=KINDS.get(row["outcome"], "data-access"),
            actor_type=row["actor"],
            actor_id=row["actor_id"],
            purpose=row["purpose"],
            grant_id=row["grant_id"],
            outcome=row["outcome"],
            resource_type=row["resource_type"],
            resource_id=row["resource_id"],
            occurred_at=row["accessed_at"].astimezone(UTC),
            recorded_at=row["recorded_at"].astimezone(UTC),
            personal_commitment=personal_commitment(
                salt, {"actor_name": row["actor_name"], "reason": row["reason"]}
            ),
            account_previous_hash=account_previous,
            account_hash="",
        )
        digest = entry_digest(entry.chained_fields())
        entry.account_hash = account_hash = link(account_previous, digest)
        connection.execute(sa.insert(AuditEntry.__table__).values(**entry.model_dump()))
        connection.execute(
            sa.text(
                "INSERT INTO audit_personal VALUES (:global_seq, :account_id, :salt, "
                ":actor_name, :reason)"
            ),
            {
                "global_seq": global_seq,
                "account_id": row["account_id"],
                "salt": salt,
                "actor_name": row["actor_name"],
                "reason": row["reason"],
            },
        )
        global_hash = link(global_previous, digest)
        connection.execute(
            sa.text("INSERT INTO chain_link VALUES (:seq, :reference, :digest, :previous, :hash)"),
            {
                "seq": global_seq,
                "reference": account_reference(row["account_id"], key),
                "digest": digest,
                "previous": global_previous,
                "hash": global_hash,
            },
        )
        global_previous = global_hash
        account_heads[row["account_id"]] = (account_seq + 1, account_hash)


def downgrade() -> None:
    raise NotImplementedError("the single-chain trail cannot be rebuilt from two chains")
