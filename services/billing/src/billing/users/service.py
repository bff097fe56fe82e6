"""An account's users: invite, accept, change role, remove, hand the account over."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from billing.accounts.domain import Role, UserStatus
from billing.accounts.mail import mail_presentation
from billing.accounts.models import Account, AppUser, OwnDetailsChange
from billing.auth.models import ApiKey, Principal, WebSession
from billing.auth.passwords import hash_password
from billing.auth.second_factor import IdentityCheck
from billing.errors import (
    ConflictError,
    InvalidReferenceError,
    NotFoundError,
)
from billing.rectification.models import ChangeSubject
from billing.rectification.service import Notice, rectify
from billing.users.models import InvitableRole, UserInvitation, UserInvite
from shared.contracts import UserInvited
from shared.db import SessionFactory
from shared.unit_of_work import UnitsOfWork, Work

INVITATION_DAYS = 7


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _user_of(work: Work, account_id: UUID, user_id: UUID) -> AppUser:
    """A current (not removed) user of the account, locked for the change."""
    user = (
        await work.session.exec(
            select(AppUser)
            .where(
                AppUser.account_id == account_id,
                AppUser.id == user_id,
                col(AppUser.removed_at).is_(None),
            )
            .with_for_update()
        )
    ).first()
    if user is None:
        raise NotFoundError("no such user in this account")
    return user


async def _email_taken(work: Work, account_id: UUID, email: str) -> bool:
    """Whether a user of the account (a removed one too: they keep their row) has the email."""
    found = await work.session.exec(
        select(AppUser.id).where(
            AppUser.account_id == account_id, func.lower(AppUser.email) == email.lower()
        )
    )
    return found.first() is not None


async def _flush_unless_email_taken(work: Work) -> None:
    """Write the pending changes; a colleague who took the address meanwhile is a conflict."""
    try:
        await work.session.flush()
    except IntegrityError as exc:
        if "app_user_account_id_email_key" not in str(exc.orig):
            raise
        raise ConflictError(
            "this address is already a user of the account", field="email"
        ) from None


async def _shut_out(work: Work, user_id: UUID) -> None:
    """End the user's sessions and revoke their API keys, at once."""
    now = datetime.now(UTC)
    await work.session.exec(
        update(WebSession)
        .where(col(WebSession.user_id) == user_id, col(WebSession.ended_at).is_(None))
        .values(ended_at=now)
    )
    await work.session.exec(
        update(ApiKey)
        .where(col(ApiKey.user_id) == user_id, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now)
    )


class UserService:
    """The users of the caller's account."""

    def __init__(
        self, *, sessions: SessionFactory, units: UnitsOfWork, identity: IdentityCheck
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.identity = identity

    async def list(self, *, principal: Principal) -> list[AppUser]:
        """The account's users, invited ones included, removed ones not."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            result = await session.exec(
                select(AppUser)
                .where(AppUser.account_id == account_id, col(AppUser.removed_at).is_(None))
                .order_by(col(AppUser.created_at), col(AppUser.id))
            )
            return list(result.all())

    async def invite(self, *, principal: Principal, request: UserInvite) -> AppUser:
        """Add an invited user and email them the invitation (through notifications)."""
        account_id = principal.require_user()
        token = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + timedelta(days=INVITATION_DAYS)
        async with self.units() as work:
            account = await work.session.get(Account, account_id)
            assert account is not None
            if await _email_taken(work, account_id, str(request.email)):
                raise ConflictError("this address is already a user of the account", field="email")
            user = AppUser(
                account_id=account_id,
                name=request.name,
                email=str(request.email),
                role=Role(request.role.value),
                status=UserStatus.INVITED,
            )
            work.session.add(user)
            await _flush_unless_email_taken(work)
            work.session.add(
                UserInvitation(
                    account_id=account_id,
                    user_id=user.id,
                    token_hash=_token_hash(token),
                    expires_at=expires_at,
                )
            )
            work.emit(
                UserInvited(
                    account_id=account_id,
                    user_id=user.id,
                    account_name=account.name,
                    inviter_name=principal.name,
                    name=user.name,
                    email=user.email,
                    role=user.role.value,
                    token=token,
                    expires_at=expires_at,
                    presentation=mail_presentation(account),
                )
            )
        return user

    async def accept(self, *, token: str, password: str) -> None:
        """Accept an invitation with a password: the user becomes active and may sign in."""
        password_hash = await hash_password(password)
        async with self.units() as work:
            invitation = (
                await work.session.exec(
                    select(UserInvitation)
                    .where(UserInvitation.token_hash == _token_hash(token))
                    .with_for_update()
                )
            ).first()
            now = datetime.now(UTC)
            if invitation is None or invitation.accepted_at is not None:
                raise InvalidReferenceError("no such invitation, or it was used", field="token")
            if invitation.expires_at <= now:
                raise InvalidReferenceError("the invitation has lapsed: ask again", field="token")
            user = await _user_of(work, invitation.account_id, invitation.user_id)
            invitation.accepted_at = now
            user.status = UserStatus.ACTIVE
            user.password_hash = password_hash
            work.session.add_all([invitation, user])

    async def change_role(
        self, *, principal: Principal, user_id: UUID, role: InvitableRole
    ) -> AppUser:
        """Give a user another role; the owner's role changes only by a handover."""
        account_id = principal.require_user()
        async with self.units() as work:
            user = await _user_of(work, account_id, user_id)
            if user.role is Role.OWNER:
                raise ConflictError(
                    "the owner changes only by handing the account over", field="role"
                )
            user.role = Role(role.value)
            work.session.add(user)
        return user

    async def remove(self, *, principal: Principal, user_id: UUID) -> None:
        """Remove a user: their sessions end and their API keys are revoked at once."""
        account_id = principal.require_user()
        async with self.units() as work:
            user = await _user_of(work, account_id, user_id)
            if user.role is Role.OWNER:
                raise ConflictError("the owner cannot be removed: hand the account over first")
            user.removed_at = datetime.now(UTC)
            work.session.add(user)
            await work.session.flush()
            await _shut_out(work, user.id)

    async def hand_over(
        self, *, principal: Principal, user_id: UUID, password: str, code: str | None
    ) -> AppUser:
        """Make another active user the owner, once the owner re-authenticated."""
        account_id = principal.require_user()
        assert principal.user_id is not None
        await self.identity.confirm(user_id=principal.user_id, password=password, code=code)
        async with self.units() as work:
            owner = await _user_of(work, account_id, principal.user_id)
            successor = await _user_of(work, account_id, user_id)
            if successor.id == owner.id:
                raise InvalidReferenceError("you already own the account", field="user_id")
            if successor.status is not UserStatus.ACTIVE:
                raise InvalidReferenceError("only a user who accepted may own", field="user_id")
            owner.role = Role.ADMIN
            work.session.add(owner)
            await work.session.flush()  # demoted first: one owner at all times
            successor.role = Role.OWNER
            work.session.add(successor)
        return successor

    async def change_own_details(
        self, *, principal: Principal, change: OwnDetailsChange
    ) -> AppUser:
        """Correct the caller's name or email; a new email needs the password, and the former
        address is told of it (RECTIFY)."""
        account_id = principal.require_user()
        assert principal.user_id is not None
        if change.email is not None:
            # Before the user's row is locked: a failure is recorded against that row.
            await self.identity.confirm(
                user_id=principal.user_id, password=change.password or "", code=change.code
            )
        async with self.units() as work:
            user = await _user_of(work, account_id, principal.user_id)
            notice = None
            if change.email is not None and change.email != user.email:
                if await _email_taken(work, account_id, change.email):
                    raise ConflictError(
                        "this address is already a user of the account", field="email"
                    )
                notice = Notice(name=user.name, email=user.email)
            await rectify(
                work,
                principal=principal,
                subject=ChangeSubject.USER,
                row=user,
                patch=change,
                notice=notice,
            )
            await _flush_unless_email_taken(work)
        return user
