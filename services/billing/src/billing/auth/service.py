"""Authentication: API keys, made once and kept only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from billing.accounts.domain import ADMINISTRATORS, AccountStatus, Role
from billing.auth.models import ApiKey, ApiKeyCreate, Principal
from billing.errors import NotAuthenticatedError, NotFoundError
from billing.staff_access.domain import StaffRole
from shared.db import SessionFactory, pooled_driver
from shared.unit_of_work import UnitsOfWork

API_KEY_PREFIX = "qk_"


def new_api_key() -> str:
    """A fresh bearer key: 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """What is stored of a key."""
    # 256 random bits make a fast hash enough (passwords will get Argon2id).
    return hashlib.sha256(api_key.encode()).hexdigest()


# One round trip, straight through asyncpg: every request authenticates, and the ORM would
# cost more than the query. Keys are users' only: staff sign in with a password and a session.
_CREDENTIAL = """
SELECT k.id AS key_id, k.scopes, k.last_used_at, u.id AS user_id, u.name AS user_name, u.role,
    a.id AS account_id, a.status, k.integration_id, i.name AS integration_name
FROM api_key k
JOIN app_user u ON u.id = k.user_id
JOIN account a ON a.id = k.account_id
LEFT JOIN integration i ON i.id = k.integration_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.removed_at IS NULL
    AND (k.expires_at IS NULL OR k.expires_at > now())
    AND (k.integration_id IS NULL OR i.revoked_at IS NULL)
"""
_TOUCH = "UPDATE api_key SET last_used_at = now() WHERE id = $1"
TOUCH_EVERY = timedelta(seconds=60)  # last use is written at most this often per key


class AuthService:
    """Resolves credentials to the caller; makes, lists and revokes API keys."""

    def __init__(
        self, *, engine: AsyncEngine, sessions: SessionFactory, units: UnitsOfWork
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.units = units

    async def authenticate(self, *, api_key: str) -> Principal:
        """Resolve a bearer API key to its user or staff member."""
        async with pooled_driver(self.engine) as db:
            row = await db.fetchrow(_CREDENTIAL, hash_api_key(api_key))
            last = row["last_used_at"] if row is not None else None
            if row is not None and (last is None or datetime.now(UTC) - last > TOUCH_EVERY):
                await db.execute(_TOUCH, row["key_id"])
        if row is None:
            raise NotAuthenticatedError("unknown, expired or revoked API key")
        scopes = None if row["scopes"] is None else frozenset(row["scopes"])
        if row["integration_id"] is not None:
            return integration_principal(row, scopes=scopes or frozenset())
        return user_principal(row, scopes=scopes)

    async def create_key(
        self, *, principal: Principal, request: ApiKeyCreate
    ) -> tuple[ApiKey, str]:
        """A new key of the caller's, limited to the scopes asked; shown once."""
        account_id = principal.require_user()
        secret = new_api_key()
        key = ApiKey(
            key_hash=hash_api_key(secret),
            account_id=account_id,
            user_id=principal.user_id,
            name=request.name,
            scopes=sorted(request.scopes),
            expires_at=request.expires_at,
        )
        async with self.units() as work:
            work.session.add(key)
        return key, secret

    async def keys(self, *, principal: Principal) -> list[ApiKey]:
        """The caller's keys, revoked ones included, newest first."""
        principal.require_user()
        async with self.sessions() as session:
            result = await session.exec(
                select(ApiKey)
                .where(ApiKey.user_id == principal.user_id, col(ApiKey.integration_id).is_(None))
                .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id))
            )
            return list(result.all())

    async def revoke_key(self, *, principal: Principal, key_id: UUID) -> ApiKey:
        """Revoke one of the caller's keys (an admin: any of the account's); at once."""
        account_id = principal.require_user()
        async with self.units() as work:
            query = select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.id == key_id)
            if principal.role not in ADMINISTRATORS:
                query = query.where(ApiKey.user_id == principal.user_id)
            key: ApiKey | None = (await work.session.exec(query.with_for_update())).first()
            if key is None:
                raise NotFoundError("no such API key")
            if key.revoked_at is None:
                key.revoked_at = datetime.now(UTC)
                work.session.add(key)
        return key


def user_principal(
    row: Mapping[str, Any],
    *,
    session_id: UUID | None = None,
    scopes: frozenset[str] | None = None,
) -> Principal:
    """The user a credential's row names (user_id, user_name, role, account_id, status); a
    terminated account's users may still read."""
    return Principal(
        kind="user",
        name=row["user_name"],
        account_id=row["account_id"],
        user_id=row["user_id"],
        role=Role[row["role"]],
        session_id=session_id,
        scopes=scopes,
        read_only=AccountStatus[row["status"]] is not AccountStatus.ACTIVE,
    )


def integration_principal(row: Mapping[str, Any], *, scopes: frozenset[str]) -> Principal:
    """A third party let in by the account: as a bookkeeper if it may change records, else as
    a reader, and only within its scopes; never an administrator (LEAST-ACCESS)."""
    writes = any(scope.endswith(":write") for scope in scopes)
    return Principal(
        kind="user",
        name=row["integration_name"],
        account_id=row["account_id"],
        user_id=row["user_id"],
        role=Role.ACCOUNTANT if writes else Role.READ_ONLY,
        scopes=scopes,
        read_only=AccountStatus[row["status"]] is not AccountStatus.ACTIVE,
        integration_id=row["integration_id"],
    )


def staff_principal(row: Mapping[str, Any], *, session_id: UUID) -> Principal:
    """The staff member a session's row names (staff_id, staff_name, staff_roles)."""
    return Principal(
        kind="staff",
        name=row["staff_name"],
        staff_id=row["staff_id"],
        staff_roles=frozenset(StaffRole(role) for role in row["staff_roles"]),
        session_id=session_id,
    )
