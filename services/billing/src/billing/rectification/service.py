"""Rectification (RECTIFY): the one way any route corrects details, recording and announcing it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlmodel import col, select

from billing.auth.models import Principal
from billing.rectification.models import ChangeRecord, ChangeSubject
from billing.schemas import Patch
from shared.contracts import DetailsChanged
from shared.db import SessionFactory
from shared.unit_of_work import Work


@dataclass(frozen=True)
class Notice:
    """Someone a change must be told to (the owner, a user at their former address)."""

    name: str
    email: str


async def rectify(
    work: Work,
    *,
    principal: Principal,
    subject: ChangeSubject,
    row: Any,
    patch: Patch,
    notice: Notice | None = None,
) -> list[str]:
    """Apply the patch's changed fields to the row, record who changed which, and emit it.

    A field sent with the value it already has is no change: nothing is recorded for it.
    """
    changed = {
        name: value for name, value in patch.changes().items() if getattr(row, name) != value
    }
    if not changed:
        return []
    for name, value in changed.items():
        setattr(row, name, value)
    work.session.add(row)
    return record_change(
        work,
        principal=principal,
        subject=subject,
        subject_id=row.id,
        fields=sorted(changed),
        notice=notice,
    )


def record_change(
    work: Work,
    *,
    principal: Principal,
    subject: ChangeSubject,
    subject_id: UUID,
    fields: list[str],
    notice: Notice | None = None,
) -> list[str]:
    """Record who changed which fields of what, and emit `details.changed`, in the change's
    transaction: the one record of every correction (RECTIFY)."""
    account_id = principal.require_user()
    now = datetime.now(UTC)
    record = ChangeRecord(
        account_id=account_id,
        subject=subject,
        subject_id=subject_id,
        fields=fields,
        changed_by_user_id=principal.user_id,
        created_at=now,
    )
    work.session.add(record)
    work.emit(
        DetailsChanged(
            account_id=account_id,
            change_id=record.id,
            subject=subject.value,
            subject_id=subject_id,
            fields=record.fields,
            changed_by_name=principal.name,
            changed_at=now,
            notice_name=None if notice is None else notice.name,
            notice_email=None if notice is None else notice.email,
        )
    )
    return record.fields


class ChangeService:
    """The account's record of corrections."""

    def __init__(self, *, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def list(
        self, *, principal: Principal, subject_id: UUID | None, limit: int, offset: int
    ) -> list[ChangeRecord]:
        """The account's changes, newest first."""
        account_id = principal.require_user()
        query = select(ChangeRecord).where(ChangeRecord.account_id == account_id)
        if subject_id is not None:
            query = query.where(ChangeRecord.subject_id == subject_id)
        query = query.order_by(col(ChangeRecord.created_at).desc(), col(ChangeRecord.id))
        async with self.sessions() as session:
            return list((await session.exec(query.limit(limit).offset(offset))).all())
