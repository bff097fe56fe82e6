"""Legal holds (billing's record, the shared hold table its own purge asks, the events every
other service keeps) and legal disclosures (recorded and audited) (LAW)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlmodel import col, select

from billing.accounts.models import Account
from billing.auth.models import Principal
from billing.errors import ConflictError, InvalidReferenceError, NotFoundError
from billing.legal.models import (
    AccountLegalHold,
    LegalDisclosure,
    LegalDisclosureCreate,
    LegalHoldCreate,
    LegalHoldRelease,
)
from billing.staff_access.models import StaffMember
from shared.contracts import (
    AccessActor,
    AccessPurpose,
    DataAccessed,
    LegalHoldPlaced,
    LegalHoldReleased,
)
from shared.db import SessionFactory
from shared.legal_holds import note_placed, note_released
from shared.unit_of_work import UnitsOfWork, Work


class LegalHoldService:
    """Legal holds, placed and released by legal staff; each act is an event audit records."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def place(self, *, principal: Principal, request: LegalHoldCreate) -> AccountLegalHold:
        """Place a hold: billing's own purge is blocked in this very transaction."""
        staff_id = principal.require_staff()
        now = datetime.now(UTC)
        if request.ends_at is not None and request.ends_at <= now:
            raise InvalidReferenceError("a hold must end in the future", field="ends_at")
        async with self.units() as work:
            await _require_account(work, request.account_id)
            hold = AccountLegalHold(
                account_id=request.account_id,
                legal_basis=request.legal_basis,
                reason=request.reason,
                placed_by=staff_id,
                placed_at=now,
                ends_at=request.ends_at,
            )
            work.session.add(hold)
            placed = LegalHoldPlaced(
                account_id=hold.account_id,
                hold_id=hold.id,
                legal_basis=hold.legal_basis,
                reason=hold.reason,
                placed_by=staff_id,
                placed_by_name=await _name_of(work, staff_id),
                placed_at=now,
                ends_at=hold.ends_at,
            )
            await note_placed(work.session, placed)
            work.emit(placed)
        return hold

    async def release(
        self, *, principal: Principal, hold_id: UUID, request: LegalHoldRelease
    ) -> AccountLegalHold:
        """Release a hold; a termination that waited for it goes on if no other stands."""
        staff_id = principal.require_staff()
        async with self.units() as work:
            hold: AccountLegalHold | None = (
                await work.session.exec(
                    select(AccountLegalHold).where(AccountLegalHold.id == hold_id).with_for_update()
                )
            ).first()
            if hold is None:
                raise NotFoundError("no such legal hold")
            if hold.released_at is not None:
                raise ConflictError("this hold was already released")
            now = datetime.now(UTC)
            hold.released_by, hold.released_at, hold.release_reason = staff_id, now, request.reason
            work.session.add(hold)
            released = LegalHoldReleased(
                account_id=hold.account_id,
                hold_id=hold.id,
                released_by=staff_id,
                released_by_name=await _name_of(work, staff_id),
                reason=request.reason,
                released_at=now,
            )
            await note_released(work.session, released)
            work.emit(released)
        return hold

    async def list(self, *, account_id: UUID | None) -> list[AccountLegalHold]:
        """Holds, newest first; those of one account if given."""
        return await _newest_first(
            self.sessions, AccountLegalHold, AccountLegalHold.placed_at, account_id
        )


LegalRecord = TypeVar("LegalRecord", AccountLegalHold, LegalDisclosure)


async def _newest_first(
    sessions: SessionFactory, model: type[LegalRecord], when: Any, account_id: UUID | None
) -> list[LegalRecord]:
    """The records, newest first (at most 500); those of one account if given."""
    async with sessions() as session:
        query = select(model).order_by(col(when).desc())
        if account_id is not None:
            query = query.where(col(model.account_id) == account_id)
        return list((await session.exec(query.limit(500))).all())


async def _require_account(work: Work, account_id: UUID) -> None:
    if await work.session.get(Account, account_id) is None:
        raise InvalidReferenceError("no such account", field="account_id")


async def _name_of(work: Work, staff_id: UUID) -> str:
    member = await work.session.get(StaffMember, staff_id)
    return member.name if member is not None else ""


class LegalDisclosureService:
    """Legal disclosures: each recorded, and a data access audit chains (actor: legal)."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def record(
        self, *, principal: Principal, request: LegalDisclosureCreate
    ) -> LegalDisclosure:
        """Record what was given, to whom, under which basis; audit gets it in the same commit."""
        staff_id = principal.require_staff()
        now = datetime.now(UTC)
        disclosed_at = request.disclosed_at or now
        if disclosed_at > now:
            raise InvalidReferenceError("a disclosure is recorded once made", field="disclosed_at")
        async with self.units() as work:
            await _require_account(work, request.account_id)
            disclosure = LegalDisclosure(
                account_id=request.account_id,
                legal_basis=request.legal_basis,
                recipient=request.recipient,
                what=request.what,
                disclosed_by=staff_id,
                disclosed_at=disclosed_at,
            )
            work.session.add(disclosure)
            work.emit(
                DataAccessed(
                    account_id=disclosure.account_id,
                    access_id=disclosure.id,
                    actor=AccessActor.LEGAL,
                    actor_id=str(staff_id),
                    actor_name=await _name_of(work, staff_id),
                    purpose=AccessPurpose.LEGAL,
                    reason=(
                        f"{disclosure.legal_basis}; given to {disclosure.recipient}: "
                        f"{disclosure.what}"
                    ),
                    grant_id=None,
                    resource_type="legal_disclosure",
                    resource_id=str(disclosure.id),
                    accessed_at=disclosed_at,
                )
            )
        return disclosure

    async def list(self, *, account_id: UUID | None) -> list[LegalDisclosure]:
        """Disclosures, newest first; those of one account if given."""
        return await _newest_first(
            self.sessions, LegalDisclosure, LegalDisclosure.disclosed_at, account_id
        )
