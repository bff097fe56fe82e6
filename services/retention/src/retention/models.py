"""Retention's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import BigInteger, Column, DateTime, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from retention.domain import SagaStatus


class RetentionTable(SQLModel, registry=registry()):
    """Base of retention's tables; its metadata is retention's alone."""


def _timestamp() -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=False, server_default=func.now())


class TerminationSaga(RetentionTable, table=True):
    """A termination in progress; deleted when its certificate is issued."""

    __tablename__ = "termination_saga"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    account_id: UUID = Field(unique=True)
    status: SagaStatus = Field(default=SagaStatus.EXPORTING)
    account_name: str
    owner_email: str
    participants: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    slices: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    purged: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    bundle_transfer_id: UUID | None = None
    bundle_sha256: str | None = None
    bundle_size: int | None = Field(default=None, sa_type=BigInteger)
    manifest_sha256: str | None = Field(default=None, description="Of the bundle's manifest.")
    purged_at: dict[str, str] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default="{}"),
        description="When each participant said it purged (ISO 8601).",
    )
    terminated_at: datetime = Field(sa_type=DateTime(timezone=True))
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    step_attempt: int = Field(default=1, description="Requests sent for the current step.")
    step_deadline_at: datetime = Field(
        sa_type=DateTime(timezone=True), description="When the current step is overdue."
    )
    destroyed_keys: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default="[]"),
        description="The account's data keys, destroyed once the export was delivered.",
    )
    waiting_for_holds: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default="[]"),
        description="The legal holds a held saga waits for.",
    )
    needs_attention: str | None = Field(
        default=None, description="Why a person must look: set when retries are used up."
    )
    trace_parent: str | None = Field(
        default=None,
        description="W3C traceparent of the termination: each step's span joins its trace.",
    )
    plan: str | None = Field(default=None, description="The plan: it sets the grace period.")
    purge_due_at: datetime | None = Field(
        default=None,
        sa_type=DateTime(timezone=True),
        description="The grace period's end: the purge starts then, and the link dies.",
    )
    downloads: int = Field(default=0, description="Times the export link was used.")
    created_at: datetime | None = Field(default=None, sa_column=_timestamp())


class AccountPlan(RetentionTable, table=True):
    """An account's plan, from billing's `account.plan_changed`: its sweep's cutoffs."""

    __tablename__ = "account_plan"

    account_id: UUID = Field(primary_key=True)
    plan: str
    changed_at: datetime = Field(sa_type=DateTime(timezone=True))


class RetentionSweep(RetentionTable, table=True):
    """One sweep of every known account (PLAN-RETENTION): what was asked, what came back."""

    __tablename__ = "retention_sweep"
    # A scheduled sweep's slot is taken once, whichever instance gets there first.
    __table_args__ = (UniqueConstraint("slot"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    slot: datetime | None = Field(
        default=None,
        sa_type=DateTime(timezone=True),
        description="The schedule's slot; null for one an operator asked for.",
    )
    dry_run: bool
    as_of: datetime = Field(sa_type=DateTime(timezone=True))
    accounts: int = Field(description="Accounts asked.")
    expected_reports: int = Field(description="Reports that complete it: accounts x services.")
    reports: int = Field(default=0)
    held_reports: int = Field(default=0, description="Reports of an account on legal hold.")
    rows: int = Field(default=0, sa_type=BigInteger, description="Deleted, or would be.")
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class SweepTally(RetentionTable, table=True):
    """A sweep's sum for one table of one service: no account is named."""

    __tablename__ = "sweep_tally"

    sweep_id: UUID = Field(primary_key=True, foreign_key="retention_sweep.id", ondelete="CASCADE")
    service: str = Field(primary_key=True)
    table_name: str = Field(primary_key=True)
    category: str
    rows: int = Field(default=0, sa_type=BigInteger)
    oldest_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    next_due_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class PurgeCertificate(RetentionTable, table=True):
    """Proof that an account was exported and purged everywhere; names it only by keyed hash."""

    __tablename__ = "purge_certificate"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    saga_id: UUID = Field(unique=True)
    account_reference: str = Field(index=True)
    services: dict[str, int] = Field(sa_column=Column(JSONB, nullable=False))
    destroyed_keys: list[str] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    bundle_sha256: str
    terminated_at: datetime = Field(sa_type=DateTime(timezone=True))
    delivered_at: datetime = Field(sa_type=DateTime(timezone=True))
    completed_at: datetime = Field(sa_type=DateTime(timezone=True))
    digest: str = Field(description="SHA-256 of the signed payload.")
    payload: str | None = Field(
        default=None,
        sa_type=Text,
        description="The certificate as signed: canonical JSON, kept byte for byte.",
    )
    signature: str | None = Field(default=None, description="Base64 Ed25519 signature.")
    signing_key_id: str | None = Field(default=None, description="Which public key verifies it.")
