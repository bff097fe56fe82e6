"""Audit's tables: the chained entries, their erasable personal parts, the global chain's
links (which outlive a purge), the signed checkpoints, and the purged accounts' references."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from audit.domain import CHAINED_FIELDS, ChainedEntry, EntryKind


class AuditTable(SQLModel, registry=registry()):
    """Base of audit's tables; its metadata is audit's alone."""


class AuditEntry(AuditTable, table=True):
    """One recorded act on customer data, with no personal value in it: chained into its
    account's chain here and into the global chain by its link."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        UniqueConstraint("account_id", "account_seq"),
        Index("ix_audit_entry_actor_time", "actor_id", "occurred_at"),  # the alert's count
    )

    global_seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    account_id: UUID = Field(index=True)
    account_seq: int
    event_id: UUID = Field(unique=True)
    kind: str
    actor_type: str
    actor_id: str
    purpose: str
    grant_id: UUID | None = None
    outcome: str
    resource_type: str
    resource_id: str
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    recorded_at: datetime = Field(sa_type=DateTime(timezone=True))
    personal_commitment: str
    account_previous_hash: str
    account_hash: str

    def chained_fields(self) -> dict[str, Any]:
        """The fields the entry's digest covers, in JSON form."""
        return self.model_dump(mode="json", include=set(CHAINED_FIELDS))

    def chained(self) -> ChainedEntry:
        """The entry as the chain's checks see it."""
        return ChainedEntry(
            global_seq=self.global_seq,
            fields=self.chained_fields(),
            account_previous_hash=self.account_previous_hash,
            account_hash=self.account_hash,
        )


class AuditPersonal(AuditTable, table=True):
    """An entry's personal part (who, in words, and why): erasable on its own, the entry keeps
    a salted commitment to it."""

    __tablename__ = "audit_personal"

    global_seq: int = Field(
        sa_column=Column(
            BigInteger,
            ForeignKey("audit_entry.global_seq", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    account_id: UUID = Field(index=True)
    salt: str
    actor_name: str
    reason: str


class ChainLink(AuditTable, table=True):
    """A link of the global chain: the entry's digest, chained; the account only by keyed
    reference. Kept after the account's purge, so the global chain still verifies."""

    __tablename__ = "chain_link"

    global_seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    account_reference: str = Field(index=True)
    digest: str
    previous_hash: str
    hash: str


class AuditCheckpoint(AuditTable, table=True):
    """The chains' heads at a moment, signed with Ed25519 and linked to the previous one."""

    __tablename__ = "audit_checkpoint"

    number: int = Field(primary_key=True)
    global_seq: int = Field(sa_type=BigInteger)
    global_hash: str
    payload: str = Field(sa_type=Text, description="The signed canonical JSON, byte for byte.")
    sha256: str = Field(description="Of the payload: the next checkpoint names it.")
    signature: str = Field(description="Base64 Ed25519 signature of the payload.")
    signing_key_id: str
    created_at: datetime = Field(sa_type=DateTime(timezone=True))


class PurgedAccount(AuditTable, table=True):
    """An account purged at termination, by keyed reference: its links have no entry."""

    __tablename__ = "purged_account"
    __table_args__ = (UniqueConstraint("account_reference"),)

    account_reference: str = Field(primary_key=True)
    purged_at: datetime = Field(sa_type=DateTime(timezone=True))


class PurgeRecord(AuditTable, table=True):
    """A purged account's signed purge certificate, chained into the global chain only (the
    account's own chain went with the purge). It holds no personal data and is kept as proof."""

    __tablename__ = "purge_record"

    global_seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    account_reference: str = Field(unique=True)
    event_id: UUID = Field(unique=True)
    certificate_id: UUID
    certificate: str = Field(sa_type=Text, description="Canonical JSON, byte for byte.")
    certificate_sha256: str
    signature: str
    signing_key_id: str
    recorded_at: datetime = Field(sa_type=DateTime(timezone=True))

    def chained_fields(self) -> dict[str, Any]:
        """What its link's digest covers."""
        return {
            "kind": EntryKind.PURGE_CERTIFIED.value,
            "account_reference": self.account_reference,
            "event_id": str(self.event_id),
            "certificate_id": str(self.certificate_id),
            "certificate_sha256": self.certificate_sha256,
            "signature": self.signature,
            "signing_key_id": self.signing_key_id,
        }

    def chained(self) -> ChainedEntry:
        """The record as the global chain's check sees it."""
        return ChainedEntry(self.global_seq, self.chained_fields(), "", "")


class GrantMark(AuditTable, table=True):
    """An access grant as billing announced it: what a read under it is checked against."""

    __tablename__ = "access_grant_mark"

    grant_id: UUID = Field(primary_key=True)
    account_id: UUID = Field(index=True)
    staff_id: UUID
    purpose: str
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    expiry_recorded: bool = Field(
        default=False, description="Its lapse is in the trail (a grant-expired entry)."
    )


class AuditAlert(AuditTable, table=True):
    """Something a person must look at, raised once (its key says once for what)."""

    __tablename__ = "audit_alert"
    __table_args__ = (UniqueConstraint("once_key"),)

    id: UUID = Field(primary_key=True)
    kind: str
    actor_id: str
    once_key: str
    detail: str
    raised_at: datetime = Field(sa_type=DateTime(timezone=True))
