"""Authentication: API keys, made once and kept only as a hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from billing.accounts.domain import AccountStatus
from billing.accounts.models import Account, AppUser
from billing.auth.models import ApiKey, Principal
from billing.errors import NotAuthenticatedError, PermissionDeniedError
from billing.staff_access.models import StaffMember
from shared.db import SessionFactory

API_KEY_PREFIX = "qk_"


def new_api_key() -> str:
    """A fresh bearer key: 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """What is stored of a key."""
    # 256 random bits make a fast hash enough (passwords will get Argon2id).
    return hashlib.sha256(api_key.encode()).hexdigest()


async def find_credential(
    session: AsyncSession, key_hash: str
) -> tuple[ApiKey, AppUser | None, Account | None, StaffMember | None] | None:
    """An unrevoked API key by its hash, with its user and account or its staff member."""
    result = await session.exec(
        select(ApiKey, AppUser, Account, StaffMember)
        .outerjoin(AppUser, col(AppUser.id) == col(ApiKey.user_id))
        .outerjoin(Account, col(Account.id) == col(ApiKey.account_id))
        .outerjoin(StaffMember, col(StaffMember.id) == col(ApiKey.staff_id))
        .where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
    )
    row = result.first()
    return None if row is None else (row[0], row[1], row[2], row[3])


class AuthService:
    """Resolves credentials to the caller."""

    def __init__(self, *, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def authenticate(self, *, api_key: str) -> Principal:
        """Resolve a bearer API key to its user or staff member."""
        async with self.sessions() as session:
            credential = await find_credential(session, hash_api_key(api_key))
        if credential is None:
            raise NotAuthenticatedError("unknown or revoked API key")
        _, user, account, staff = credential
        if staff is not None:
            return Principal(kind="staff", name=staff.name, staff_id=staff.id)
        assert user is not None
        assert account is not None
        if account.status is not AccountStatus.ACTIVE:
            raise PermissionDeniedError("the account is terminated")
        return Principal(
            kind="user", name=user.name, account_id=account.id, user_id=user.id, role=user.role
        )
