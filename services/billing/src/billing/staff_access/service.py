"""Staff access: named staff, grants by the account, and audited reads (STAFF-ACCESS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.domain import AccountStatus
from billing.accounts.service import get_account
from billing.auth.models import ApiKey, Principal
from billing.auth.service import hash_api_key, new_api_key
from billing.customers.models import Customer
from billing.customers.service import get_customer
from billing.errors import (
    ConflictError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
)
from billing.staff_access.models import AccessGrant, AccessGrantCreate, StaffCreate, StaffMember
from shared.contracts import AccessActor, AccessOutcome, AccessPurpose, DataAccessed
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork


async def active_grant(
    session: AsyncSession, *, account_id: UUID, staff_id: UUID, purpose: AccessPurpose, at: datetime
) -> AccessGrant | None:
    """A grant that lets the staff member read the account for the purpose now."""
    result = await session.exec(
        select(AccessGrant).where(
            AccessGrant.account_id == account_id,
            AccessGrant.staff_id == staff_id,
            AccessGrant.purpose == purpose,
            col(AccessGrant.revoked_at).is_(None),
            col(AccessGrant.expires_at) > at,
        )
    )
    return result.first()


class StaffAccessService:
    """Who among the staff may read what, and the record of each read."""

    def __init__(
        self, *, sessions: SessionFactory, units: UnitsOfWork, max_grant_hours: int = 72
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.max_grant_hours = max_grant_hours

    async def register_staff(self, *, request: StaffCreate) -> tuple[StaffMember, str]:
        """Register a named staff member and give them an API key."""
        api_key = new_api_key()
        async with self.units() as work:
            found = await work.session.exec(
                select(StaffMember).where(StaffMember.email == str(request.email))
            )
            if found.first() is not None:
                raise ConflictError("a staff member with this email exists", field="email")
            staff = StaffMember(name=request.name, email=str(request.email))
            work.session.add(staff)
            await work.session.flush()
            work.session.add(ApiKey(key_hash=hash_api_key(api_key), staff_id=staff.id))
        return staff, api_key

    async def open_grant(self, *, principal: Principal, request: AccessGrantCreate) -> AccessGrant:
        """Let a named staff member read the account for a purpose (STAFF-ACCESS, SUPPORT-DATA)."""
        account_id = principal.require_user()
        assert principal.user_id is not None
        now = datetime.now(UTC)
        if request.expires_at <= now:
            raise InvalidReferenceError("must be in the future", field="expires_at")
        if request.expires_at > now + timedelta(hours=self.max_grant_hours):
            raise InvalidReferenceError(
                f"at most {self.max_grant_hours} hours ahead", field="expires_at"
            )
        async with self.units() as work:
            if await work.session.get(StaffMember, request.staff_id) is None:
                raise InvalidReferenceError("no such staff member", field="staff_id")
            grant = AccessGrant(
                account_id=account_id,
                staff_id=request.staff_id,
                purpose=request.purpose,
                reason=request.reason,
                granted_by_user_id=principal.user_id,
                expires_at=request.expires_at,
            )
            work.session.add(grant)
        return grant

    async def grants(self, *, principal: Principal) -> list[AccessGrant]:
        """The account's access grants, newest first, revoked and lapsed ones included."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            result = await session.exec(
                select(AccessGrant)
                .where(AccessGrant.account_id == account_id)
                .order_by(col(AccessGrant.created_at).desc(), col(AccessGrant.id))
            )
            return list(result.all())

    async def revoke_grant(self, *, principal: Principal, grant_id: UUID) -> AccessGrant:
        """End a grant now: the next read under it is refused (STAFF-ACCESS)."""
        account_id = principal.require_user()
        async with self.units() as work:
            grant: AccessGrant | None = (
                await work.session.exec(
                    select(AccessGrant)
                    .where(AccessGrant.account_id == account_id, AccessGrant.id == grant_id)
                    .with_for_update()
                )
            ).first()
            if grant is None:
                raise NotFoundError("no such access grant in this account")
            if grant.revoked_at is None:
                grant.revoked_at = datetime.now(UTC)
                work.session.add(grant)
        return grant

    async def read_customer(
        self, *, principal: Principal, account_id: UUID, customer_id: UUID, purpose: AccessPurpose
    ) -> Customer:
        """A staff read under a grant; the access, or its refusal, is recorded (STAFF-ACCESS)."""
        staff_id = principal.require_staff()
        now = datetime.now(UTC)
        refusal = "no active access grant for this staff member, account and purpose"
        async with self.units() as work:
            account = await get_account(work.session, account_id)
            if account is None or account.status is not AccountStatus.ACTIVE:
                # Nothing to tell a customer about: no such account, or one being exported and
                # purged, whose key is gone (nobody reads it any more).
                raise PermissionDeniedError(refusal)
            grant = await active_grant(
                work.session, account_id=account_id, staff_id=staff_id, purpose=purpose, at=now
            )
            customer = None
            if grant is not None:
                customer = await get_customer(work.session, account_id, customer_id)
                if customer is None:
                    raise NotFoundError("no such customer in this account")
            work.emit(
                DataAccessed(
                    account_id=account_id,
                    access_id=uuid4(),
                    actor=AccessActor.STAFF,
                    actor_id=str(staff_id),
                    actor_name=principal.name,
                    purpose=purpose,
                    reason=grant.reason if grant is not None else refusal,
                    grant_id=grant.id if grant is not None else None,
                    outcome=AccessOutcome.GRANTED if grant is not None else AccessOutcome.REFUSED,
                    resource_type="customer",
                    resource_id=str(customer_id),
                    accessed_at=now,
                ),
            )
        # The refusal is committed with its record before the caller hears of it.
        if customer is None:
            raise PermissionDeniedError(refusal)
        return customer
