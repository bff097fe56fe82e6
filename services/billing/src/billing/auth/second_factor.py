"""An optional second factor: TOTP codes (RFC 6238) with single-use recovery codes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pyotp
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.auth.models import Principal
from billing.auth.passwords import verify_password
from billing.errors import (
    ConflictError,
    InvalidReferenceError,
    PermissionDeniedError,
    ThrottledError,
)
from shared.crypto import decrypt_personal, encrypt_personal
from shared.db import driver_in_transaction, pooled_driver
from shared.keystore import KeyStore

RECOVERY_CODES = 10
ISSUER = "Quittance"
_SECRET = ("secret",)

_USER = "SELECT email, password_hash, totp_secret, totp_pending FROM app_user WHERE id = $1"
_PEND = "UPDATE app_user SET totp_pending = $2 WHERE id = $1"
_ENABLE = """
UPDATE app_user SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = $2
WHERE id = $1
"""
_DISABLE = (
    "UPDATE app_user SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL "
    "WHERE id = $1"
)
_FORGET_CODES = "DELETE FROM user_recovery_code WHERE user_id = $1"
_ADD_CODES = """
INSERT INTO user_recovery_code (id, account_id, user_id, code_hash)
SELECT unnest($3::uuid[]), $1, $2, unnest($4::text[])
"""
# A code's time step is accepted once: a code seen on a shoulder cannot be replayed.
_USE_STEP = """
UPDATE app_user SET totp_last_step = $2
WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)
"""
_USE_RECOVERY_CODE = """
UPDATE user_recovery_code SET used_at = now()
WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL
"""


def _digest(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").lower().encode()).hexdigest()


def _aad(user_id: UUID) -> bytes:
    return f"totp|{user_id}".encode()


def new_recovery_code() -> str:
    """Ten random characters in two groups, easy to type: 50 bits each."""
    raw = secrets.token_hex(5)
    return f"{raw[:5]}-{raw[5:]}"


class SecondFactor:
    """Enrols, checks and removes a user's TOTP; the secret is sealed with the account's key."""

    def __init__(self, *, engine: AsyncEngine, keys: KeyStore) -> None:
        self.engine = engine
        self.keys = keys

    async def _seal(self, account_id: UUID, user_id: UUID, secret: str) -> str:
        key = await self.keys.key_for_writing(account_id)
        sealed: str = encrypt_personal({"secret": secret}, _SECRET, key, aad=_aad(user_id))[
            "secret"
        ]
        return sealed

    async def _open(self, user_id: UUID, sealed: str) -> str:
        opened = await decrypt_personal(
            {"secret": sealed}, _SECRET, self.keys.key, aad=_aad(user_id)
        )
        secret: str = opened["secret"]
        return secret

    async def start(self, *, principal: Principal) -> tuple[str, str]:
        """A new secret to scan, pending until a code from it confirms it."""
        account_id = principal.require_user()
        assert principal.user_id is not None
        secret = pyotp.random_base32()
        sealed = await self._seal(account_id, principal.user_id, secret)
        async with self.engine.begin() as connection:
            db: Any = await driver_in_transaction(connection)
            user = await db.fetchrow(_USER, principal.user_id)
            if user["totp_secret"] is not None:
                raise ConflictError("a second factor is already on: turn it off first")
            await db.execute(_PEND, principal.user_id, sealed)
        uri = pyotp.TOTP(secret).provisioning_uri(name=user["email"], issuer_name=ISSUER)
        return secret, uri

    async def confirm(self, *, principal: Principal, code: str) -> list[str]:
        """Turn the pending secret on with a code from it; the recovery codes are shown once."""
        account_id = principal.require_user()
        assert principal.user_id is not None
        async with pooled_driver(self.engine) as db:
            user = await db.fetchrow(_USER, principal.user_id)
        if user["totp_pending"] is None:
            raise ConflictError("no second factor is being set up")
        totp = pyotp.TOTP(await self._open(principal.user_id, user["totp_pending"]))
        if not totp.verify(code, valid_window=1):
            raise InvalidReferenceError(
                "the code does not match: check the device's clock", field="code"
            )
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        async with self.engine.begin() as connection:
            db = await driver_in_transaction(connection)
            await db.execute(_ENABLE, principal.user_id, totp.timecode(totp_now()))
            await db.execute(_FORGET_CODES, principal.user_id)
            await db.execute(
                _ADD_CODES,
                account_id,
                principal.user_id,
                [uuid4() for _ in codes],
                [_digest(c) for c in codes],
            )
        return codes

    async def disable(self, *, principal: Principal, password: str) -> None:
        """Turn the second factor off, confirmed by the password."""
        assert principal.user_id is not None
        async with pooled_driver(self.engine) as db:
            user = await db.fetchrow(_USER, principal.user_id)
        if not await verify_password(password, user["password_hash"]):
            raise PermissionDeniedError("confirm with your password", field="password")
        async with self.engine.begin() as connection:
            db = await driver_in_transaction(connection)
            await db.execute(_DISABLE, principal.user_id)
            await db.execute(_FORGET_CODES, principal.user_id)

    async def passes(
        self, *, user_id: UUID, sealed: str, code: str | None, recovery_code: str | None
    ) -> bool:
        """Whether a sign-in's second factor is right: a fresh code, or an unused recovery code."""
        async with self.engine.begin() as connection:
            db: Any = await driver_in_transaction(connection)
            if code is not None:
                totp = pyotp.TOTP(await self._open(user_id, sealed))
                now = totp_now()
                for drift in (0, -1, 1):  # one step either way for clocks that drift
                    at = now + timedelta(seconds=drift * totp.interval)
                    if secrets.compare_digest(totp.at(at), code):
                        used = await db.execute(_USE_STEP, user_id, totp.timecode(at))
                        return bool(used.endswith(" 1"))
                return False
            if recovery_code is not None:
                used = await db.execute(_USE_RECOVERY_CODE, user_id, _digest(recovery_code))
                return bool(used.endswith(" 1"))
        return False


_RECENT_FAILURES = """
SELECT count(*) FROM sign_in_failure
WHERE user_id = $1 AND created_at > now() - make_interval(mins => $2)
"""
# A failed re-authentication counts against the user like a failed sign-in; it has no address.
_RECORD_FAILURE = (
    "INSERT INTO sign_in_failure (id, account_id, user_id) "
    "SELECT $1, account_id, id FROM app_user WHERE id = $2"
)


class IdentityCheck:
    """Re-authentication before a sensitive change (termination, handing the account over, a new
    email): the password, and a code when the user has a second factor. Throttled with sign-in:
    a stolen session or key is not a way to guess the password."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        second_factor: SecondFactor,
        failures_per_user: int,
        window_minutes: int,
    ) -> None:
        self.engine = engine
        self.second_factor = second_factor
        self.failures_per_user = failures_per_user
        self.window_minutes = window_minutes

    async def confirm(self, *, user_id: UUID, password: str, code: str | None) -> None:
        """Raise PermissionDeniedError unless the password (and code, if needed) are right."""
        async with pooled_driver(self.engine) as db:
            user = await db.fetchrow(_USER, user_id)
            failures = await db.fetchval(_RECENT_FAILURES, user_id, self.window_minutes)
        if failures >= self.failures_per_user:
            raise ThrottledError(
                "too many failed attempts: try again later", retry_after_s=60 * self.window_minutes
            )
        if user is None or not await verify_password(password, user["password_hash"]):
            await self._failed(user_id)
            raise PermissionDeniedError(
                "confirm with your password (set one first if needed)", field="password"
            )
        if user["totp_secret"] is None:
            return
        if code is None or not await self.second_factor.passes(
            user_id=user_id, sealed=user["totp_secret"], code=code, recovery_code=None
        ):
            await self._failed(user_id)
            raise PermissionDeniedError("confirm with a fresh second factor code", field="code")

    async def _failed(self, user_id: UUID) -> None:
        async with self.engine.begin() as connection:
            db = await driver_in_transaction(connection)
            await db.execute(_RECORD_FAILURE, uuid4(), user_id)


def totp_now() -> datetime:
    """The current time, as the codes are computed from it."""
    return datetime.now(UTC)
