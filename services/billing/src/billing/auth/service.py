"""Authentication: API keys, made once and kept only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from billing.accounts.domain import AccountStatus, Role
from billing.auth.models import Principal
from billing.errors import NotAuthenticatedError
from shared.db import pooled_driver

API_KEY_PREFIX = "qk_"


def new_api_key() -> str:
    """A fresh bearer key: 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """What is stored of a key."""
    # 256 random bits make a fast hash enough (passwords will get Argon2id).
    return hashlib.sha256(api_key.encode()).hexdigest()


# One round trip, straight through asyncpg: every request authenticates, and the ORM would
# cost more than the query.
_CREDENTIAL = """
SELECT u.id AS user_id, u.name AS user_name, u.role, a.id AS account_id, a.status,
    s.id AS staff_id, s.name AS staff_name
FROM api_key k
LEFT JOIN app_user u ON u.id = k.user_id
LEFT JOIN account a ON a.id = k.account_id
LEFT JOIN staff_member s ON s.id = k.staff_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.removed_at IS NULL
"""


class AuthService:
    """Resolves credentials to the caller."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self.engine = engine

    async def authenticate(self, *, api_key: str) -> Principal:
        """Resolve a bearer API key to its user or staff member."""
        async with pooled_driver(self.engine) as db:
            row = await db.fetchrow(_CREDENTIAL, hash_api_key(api_key))
        if row is None:
            raise NotAuthenticatedError("unknown or revoked API key")
        if row["staff_id"] is not None:
            return Principal(kind="staff", name=row["staff_name"], staff_id=row["staff_id"])
        return user_principal(row)


def user_principal(row: Mapping[str, Any], *, session_id: UUID | None = None) -> Principal:
    """The user a credential's row names (user_id, user_name, role, account_id, status); a
    terminated account's users may still read."""
    return Principal(
        kind="user",
        name=row["user_name"],
        account_id=row["account_id"],
        user_id=row["user_id"],
        role=Role[row["role"]],
        session_id=session_id,
        read_only=AccountStatus[row["status"]] is not AccountStatus.ACTIVE,
    )
