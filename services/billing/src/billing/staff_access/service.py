"""Staff access: named staff, grants by the account, and audited reads (STAFF-ACCESS)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import any_, func, literal, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.domain import AccountStatus
from billing.accounts.service import get_account
from billing.auth.models import Principal, WebSession
from billing.auth.passwords import hash_password
from billing.customers.service import customer_with_contacts, get_customer
from billing.errors import (
    ConflictError,
    InvalidReferenceError,
    NotFoundError,
    PermissionDeniedError,
)
from billing.staff_access.domain import StaffRole, may_read_for
from billing.staff_access.models import AccessGrant, AccessGrantCreate, StaffCreate, StaffMember
from shared.contracts import (
    AccessActor,
    AccessGrantChanged,
    AccessOutcome,
    AccessPurpose,
    DataAccessed,
)
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork, Work

ENROLMENT_HOURS = 72


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def _staff_member(work: Work, staff_id: UUID) -> StaffMember:
    """A current (not removed) staff member, locked for the change."""
    member = (
        await work.session.exec(
            select(StaffMember)
            .where(StaffMember.id == staff_id, col(StaffMember.removed_at).is_(None))
            .with_for_update()
        )
    ).first()
    if member is None:
        raise NotFoundError("no such staff member")
    return member


async def _keep_a_security_admin(work: Work, *, losing: UUID, keeps: bool) -> None:
    """Refuse a change that would leave no security admin; every one is locked, so two admins
    removing each other at once cannot both succeed."""
    admins = await work.session.exec(
        select(StaffMember.id)
        .where(
            literal(StaffRole.SECURITY.value) == any_(col(StaffMember.roles)),
            col(StaffMember.removed_at).is_(None),
        )
        .with_for_update()
    )
    remaining = set(admins.all()) - (set() if keeps else {losing})
    if not remaining:
        raise ConflictError("this would leave no security admin: add another first")


async def _end_sessions(work: Work, staff_id: UUID) -> None:
    """End a staff member's sessions at once."""
    await work.session.exec(
        update(WebSession)
        .where(col(WebSession.staff_id) == staff_id, col(WebSession.ended_at).is_(None))
        .values(ended_at=datetime.now(UTC))
    )


class StaffService:
    """The staff population: added and given roles by a security admin, enrolled by themselves."""

    def __init__(self, *, sessions: SessionFactory, units: UnitsOfWork) -> None:
        self.sessions = sessions
        self.units = units

    async def add(self, *, request: StaffCreate) -> tuple[StaffMember, str]:
        """Add a staff member with roles; the one-time enrolment code is answered once."""
        code = secrets.token_urlsafe(24)  # 192 random bits
        async with self.units() as work:
            found = await work.session.exec(
                select(StaffMember.id).where(
                    func.lower(StaffMember.email) == str(request.email).lower()
                )
            )
            if found.first() is not None:
                raise ConflictError("a staff member with this email exists", field="email")
            member = StaffMember(
                name=request.name,
                email=str(request.email),
                roles=sorted({role.value for role in request.roles}),
                enrolment_hash=_code_hash(code),
                enrolment_expires_at=datetime.now(UTC) + timedelta(hours=ENROLMENT_HOURS),
            )
            work.session.add(member)
        return member, code

    async def find_by_email(self, email: str) -> UUID | None:
        """The id of the staff member (not removed) with this email, if any."""
        async with self.sessions() as session:
            found = await session.exec(
                select(StaffMember.id).where(
                    func.lower(StaffMember.email) == email.lower(),
                    col(StaffMember.removed_at).is_(None),
                )
            )
            return found.first()

    async def reenrol(self, *, principal: Principal, staff_id: UUID) -> tuple[StaffMember, str]:
        """A new enrolment code (a lost password): the password goes, their sessions end."""
        if staff_id == principal.staff_id:
            raise ConflictError("change your own password instead", field="staff_id")
        return await self.reenrol_on_server(staff_id=staff_id)

    async def reenrol_on_server(self, *, staff_id: UUID) -> tuple[StaffMember, str]:
        """A new enrolment code, from the server's command: the password goes, sessions end."""
        code = secrets.token_urlsafe(24)
        async with self.units() as work:
            member = await _staff_member(work, staff_id)
            member.password_hash = None
            member.enrolment_hash = _code_hash(code)
            member.enrolment_expires_at = datetime.now(UTC) + timedelta(hours=ENROLMENT_HOURS)
            work.session.add(member)
            await _end_sessions(work, staff_id)
        return member, code

    async def enrol(self, *, email: str, code: str, password: str) -> None:
        """Choose a password with the enrolment code, once, before it lapses."""
        refusal = InvalidReferenceError("unknown, used or lapsed enrolment code", field="code")
        async with self.sessions() as session:
            known = (
                await session.exec(
                    select(StaffMember.id).where(
                        StaffMember.enrolment_hash == _code_hash(code),
                        col(StaffMember.enrolment_expires_at) > datetime.now(UTC),
                    )
                )
            ).first()
        if known is None:
            raise refusal  # before the slow hash: a flood of made-up codes costs little
        password_hash = await hash_password(password)
        async with self.units() as work:
            member = (
                await work.session.exec(
                    select(StaffMember)
                    .where(
                        StaffMember.enrolment_hash == _code_hash(code),
                        col(StaffMember.removed_at).is_(None),
                    )
                    .with_for_update()
                )
            ).first()
            if member is None or member.email.lower() != email.lower():
                raise refusal
            expires = member.enrolment_expires_at
            if expires is None or expires <= datetime.now(UTC):
                raise refusal
            member.password_hash = password_hash
            member.enrolment_hash = None
            member.enrolment_expires_at = None
            work.session.add(member)

    async def members(self) -> list[StaffMember]:
        """Every current staff member."""
        async with self.sessions() as session:
            result = await session.exec(
                select(StaffMember)
                .where(col(StaffMember.removed_at).is_(None))
                .order_by(col(StaffMember.created_at), col(StaffMember.id))
            )
            return list(result.all())

    async def change_roles(
        self, *, principal: Principal, staff_id: UUID, roles: list[StaffRole]
    ) -> StaffMember:
        """Give a staff member other roles: never one's own, never leaving no security admin."""
        if staff_id == principal.staff_id:
            raise ConflictError("another security admin changes your roles", field="roles")
        async with self.units() as work:
            await _keep_a_security_admin(work, losing=staff_id, keeps=StaffRole.SECURITY in roles)
            member = await _staff_member(work, staff_id)
            member.roles = sorted({role.value for role in roles})
            work.session.add(member)
        return member

    async def remove(self, *, principal: Principal, staff_id: UUID) -> None:
        """Remove a staff member: their sessions end at once; grants naming them lead nowhere."""
        if staff_id == principal.staff_id:
            raise ConflictError("another security admin removes you")
        async with self.units() as work:
            await _keep_a_security_admin(work, losing=staff_id, keeps=False)
            member = await _staff_member(work, staff_id)
            member.removed_at = datetime.now(UTC)
            work.session.add(member)
            await _end_sessions(work, staff_id)


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


def _grant_changed(
    grant: AccessGrant, change: str, principal: Principal, at: datetime
) -> AccessGrantChanged:
    """The event that puts a grant's opening or revocation in audit's trail."""
    assert principal.user_id is not None
    return AccessGrantChanged(
        account_id=grant.account_id,
        grant_id=grant.id,
        change=change,
        staff_id=grant.staff_id,
        purpose=grant.purpose,
        reason=grant.reason,
        expires_at=grant.expires_at,
        changed_by=principal.user_id,
        changed_by_name=principal.name,
        changed_at=at,
    )


class StaffAccessService:
    """Who among the staff may read what, and the record of each read."""

    def __init__(
        self, *, sessions: SessionFactory, units: UnitsOfWork, max_grant_hours: int = 72
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.max_grant_hours = max_grant_hours

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
            member = await work.session.get(StaffMember, request.staff_id)
            if member is None or member.removed_at is not None:
                raise InvalidReferenceError("no such staff member", field="staff_id")
            roles = frozenset(StaffRole(role) for role in member.roles)
            if not may_read_for(roles, request.purpose):
                raise InvalidReferenceError(
                    f"this staff member does not work in {request.purpose.value}: "
                    f"they do {', '.join(sorted(roles)) or 'nothing yet'}",
                    field="purpose",
                )
            grant = AccessGrant(
                account_id=account_id,
                staff_id=request.staff_id,
                purpose=request.purpose,
                reason=request.reason,
                granted_by_user_id=principal.user_id,
                expires_at=request.expires_at,
            )
            work.session.add(grant)
            work.emit(_grant_changed(grant, "opened", principal, now))
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
                work.emit(_grant_changed(grant, "revoked", principal, grant.revoked_at))
        return grant

    async def read_customer(
        self, *, principal: Principal, account_id: UUID, customer_id: UUID, purpose: AccessPurpose
    ) -> dict[str, Any]:
        """A staff read under a grant; the access, or its refusal, is recorded (STAFF-ACCESS)."""
        staff_id = principal.require_staff()
        now = datetime.now(UTC)
        refusal = "no active access grant for this staff member, account and purpose"
        if not may_read_for(principal.staff_roles, purpose):
            refusal = f"reading for {purpose.value} is not the work of this staff member's roles"
        async with self.units() as work:
            account = await get_account(work.session, account_id)
            if account is None or account.status is not AccountStatus.ACTIVE:
                # Nothing to tell a customer about: no such account, or one being exported and
                # purged, whose key is gone (nobody reads it any more).
                raise PermissionDeniedError(refusal)
            grant = (
                await active_grant(
                    work.session, account_id=account_id, staff_id=staff_id, purpose=purpose, at=now
                )
                if may_read_for(principal.staff_roles, purpose)
                else None
            )
            customer = None
            if grant is not None:
                found = await get_customer(work.session, account_id, customer_id)
                if found is None:
                    raise NotFoundError("no such customer in this account")
                customer = await customer_with_contacts(work.session, found)
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
