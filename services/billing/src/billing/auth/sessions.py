"""Browser sessions (COOKIES): sign in with a password, one opaque cookie, CSRF, sign out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncEngine

from billing.accounts.domain import Role
from billing.auth.location import Locator
from billing.auth.metadata import RequestMetadata
from billing.auth.models import Principal
from billing.auth.passwords import hash_password, verify_password
from billing.auth.second_factor import SecondFactor
from billing.auth.service import staff_principal, user_principal
from billing.errors import (
    InvalidReferenceError,
    NotAuthenticatedError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
)
from billing.settings import BillingSettings
from billing.staff_access.domain import StaffRole
from shared.contracts import NewDeviceSignedIn
from shared.db import driver_in_transaction, pooled_driver
from shared.unit_of_work import UnitsOfWork

# `__Host-`: the browser keeps it only if Secure, for this host alone and the whole path.
SESSION_COOKIE = "__Host-quittance_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOUCH_EVERY = timedelta(seconds=60)  # last use is written at most this often per session


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def email_digest(email: str | None) -> str | None:
    """What a failed sign-in keeps of the email it tried: enough to throttle, not to read."""
    return None if email is None else _digest(email.strip().lower())


def csrf_token_for(session_token: str) -> str:
    """The session's CSRF token: derived from the cookie, which scripts cannot read, so a
    page of ours asks for it (`GET /session`) and another site can neither read nor forge it."""
    digest = hmac.new(session_token.encode(), b"quittance csrf", hashlib.sha256).digest()
    # Base64, not hex: the digit runs of one hex token in a thousand pass for a card number,
    # and the card number refusal (NO-PAN) reads every header.
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie's value (shown once), its CSRF token and its end."""

    token: str
    csrf_token: str
    expires_at: datetime
    user_id: UUID
    account_id: UUID
    role: Role


@dataclass(frozen=True)
class SignedInStaff:
    """A staff member's new session: the cookie's value (shown once), CSRF token and end."""

    token: str
    csrf_token: str
    expires_at: datetime
    staff_id: UUID
    name: str
    roles: frozenset[StaffRole]


_USERS_BY_EMAIL = """
SELECT u.id, u.account_id, u.role, u.password_hash, u.name, u.email, u.totp_secret
FROM app_user u JOIN account a ON a.id = u.account_id
WHERE lower(u.email) = lower($1) AND ($2::uuid IS NULL OR u.account_id = $2)
    AND u.status = 'ACTIVE' AND u.removed_at IS NULL
"""
_STAFF_BY_EMAIL = """
SELECT id, name, roles, password_hash FROM staff_member
WHERE lower(email) = lower($1) AND removed_at IS NULL
"""
# $2 is the user or staff member the email named, if any; $4 the email's digest: an address
# nobody has is throttled like one somebody has, so the answer does not tell them apart.
_FAILURES_SINCE = """
SELECT count(*) FILTER (WHERE address = $1) AS by_address,
    count(*) FILTER (WHERE user_id = $2 OR staff_id = $2 OR email_digest = $4) AS by_subject
FROM sign_in_failure WHERE created_at > now() - make_interval(mins => $3)
    AND (address = $1 OR user_id = $2 OR staff_id = $2 OR email_digest = $4)
"""
_RECORD_FAILURE = """
INSERT INTO sign_in_failure (id, account_id, user_id, staff_id, address, email_digest)
VALUES ($1, $2, $3, $4, $5, $6)
"""
_OPEN = """
INSERT INTO web_session (id, token_hash, csrf_hash, account_id, user_id, staff_id, last_seen_at,
    expires_at, ip_address, browser, operating_system, referrer, location)
VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8, $9, $10, $11, $12)
"""
# Whether the user signed in before (their mark outlives the sessions the plan's time deletes),
# and from this browser and system; the mark is set by the same statement.
_DEVICES = """
WITH mark AS (
    UPDATE app_user u SET signed_in_at = now() FROM app_user before
    WHERE u.id = $1 AND before.id = u.id
    RETURNING before.signed_in_at IS NOT NULL AS signed_in_before
)
SELECT (SELECT signed_in_before FROM mark) AS signed_in_before,
    EXISTS (
        SELECT 1 FROM web_session
        WHERE user_id = $1 AND browser = $2 AND operating_system = $3
    ) AS from_this_device
"""
_LIVE = """
SELECT id, user_id, created_at, last_seen_at, expires_at, ip_address, browser, operating_system,
    referrer, location
FROM web_session WHERE account_id = $1 AND ended_at IS NULL AND expires_at > now()
    AND last_seen_at > now() - make_interval(mins => $2)
ORDER BY last_seen_at DESC
"""
_END_OF_ACCOUNT = (
    "UPDATE web_session SET ended_at = now() WHERE id = $1 AND account_id = $2 AND ended_at IS NULL"
)
# A session is a user's or a staff member's: whoever it names must still be there.
_SESSION = """
SELECT s.id AS session_id, s.csrf_hash, s.last_seen_at, u.id AS user_id, u.name AS user_name,
    u.role, a.id AS account_id, a.status, m.id AS staff_id, m.name AS staff_name,
    m.roles AS staff_roles
FROM web_session s
LEFT JOIN app_user u ON u.id = s.user_id AND u.removed_at IS NULL
LEFT JOIN account a ON a.id = s.account_id
LEFT JOIN staff_member m ON m.id = s.staff_id AND m.removed_at IS NULL
WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now()
    AND s.last_seen_at > now() - make_interval(mins => $2)
    AND (u.id IS NOT NULL OR m.id IS NOT NULL)
"""
_TOUCH = "UPDATE web_session SET last_seen_at = now() WHERE id = $1"
_END = "UPDATE web_session SET ended_at = now() WHERE id = $1 AND ended_at IS NULL"
_END_ALL = (
    "UPDATE web_session SET ended_at = now() "
    "WHERE (user_id = $1 OR staff_id = $1) AND ended_at IS NULL"
)
# Users' and staff members' passwords, by the table that holds them.
_STORED_HASH = {
    table: f"SELECT password_hash FROM {table} WHERE id = $1"  # noqa: S608 (two fixed names)
    for table in ("app_user", "staff_member")
}
_STORE_HASH = {
    table: f"UPDATE {table} SET password_hash = $2 WHERE id = $1"  # noqa: S608
    for table in ("app_user", "staff_member")
}


class SessionService:
    """Signs people in and out, and resolves a session cookie to its user."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        units: UnitsOfWork,
        second_factor: SecondFactor,
        settings: BillingSettings,
        locator: Locator,
    ) -> None:
        self.engine = engine
        self.locator = locator
        self.units = units
        self.second_factor = second_factor
        self.idle_minutes = settings.session_idle_minutes
        self.absolute = timedelta(hours=settings.session_absolute_hours)
        self.absolute_s = int(self.absolute.total_seconds())
        self.per_user = settings.sign_in_failures_per_user
        self.per_address = settings.sign_in_failures_per_address
        self.window_minutes = settings.sign_in_throttle_minutes

    async def sign_in(
        self,
        *,
        email: str,
        password: str,
        account_id: UUID | None,
        request: RequestMetadata,
        code: str | None = None,
        recovery_code: str | None = None,
    ) -> SignedIn:
        """Check the password and open a session with a new random id (never a reused one)."""
        async with self.engine.begin() as connection:
            db: Any = await driver_in_transaction(connection)
            users = await db.fetch(_USERS_BY_EMAIL, email, account_id)
            if len(users) > 1:
                raise InvalidReferenceError(
                    "this address signs in to several accounts: name one", field="account_id"
                )
            user = users[0] if users else None
            user_id = user["id"] if user else None
            address = request.address
            await self._refuse_if_throttled(db, address, user_id, email=email)
        # Outside the transaction: Argon2id takes tens of milliseconds on purpose, and as long
        # for an unknown address, which the answer does not tell apart either.
        verified = await verify_password(password, user["password_hash"] if user else None)
        if user is None or user_id is None or not verified:
            await self._failed(address, user=user, email=email)
            raise NotAuthenticatedError("wrong email or password")
        if user["totp_secret"] is not None:
            if code is None and recovery_code is None:
                raise NotAuthenticatedError("a second factor is needed", field="code")
            if not await self.second_factor.passes(
                user_id=user_id,
                sealed=user["totp_secret"],
                code=code,
                recovery_code=recovery_code,
            ):
                await self._failed(address, user=user, email=email)
                raise NotAuthenticatedError(
                    "wrong, used or expired code", field="code" if code else "recovery_code"
                )
        token, csrf_token, expires_at = self._new_session()
        location = self.locator.locate(request.address)
        async with self.units() as work:
            db = await work.driver()
            seen = await db.fetchrow(_DEVICES, user_id, request.browser, request.operating_system)
            await db.execute(
                _OPEN,
                uuid4(),
                _digest(token),
                _digest(csrf_token),
                user["account_id"],
                user_id,
                None,
                expires_at,
                request.address,
                request.browser,
                request.operating_system,
                request.referrer,
                location,
            )
            if seen["signed_in_before"] and not seen["from_this_device"]:
                work.emit(
                    NewDeviceSignedIn(
                        account_id=user["account_id"],
                        user_id=user_id,
                        name=user["name"],
                        email=user["email"],
                        address=request.address,
                        location=location,
                        browser=request.browser,
                        operating_system=request.operating_system,
                        signed_in_at=datetime.now(UTC),
                    )
                )
        return SignedIn(
            token, csrf_token, expires_at, user_id, user["account_id"], Role[user["role"]]
        )

    async def sign_in_staff(
        self, *, email: str, password: str, request: RequestMetadata
    ) -> SignedInStaff:
        """A staff member signs in the same way: password, throttle, one cookie, CSRF."""
        async with self.engine.begin() as connection:
            db: Any = await driver_in_transaction(connection)
            staff = await db.fetchrow(_STAFF_BY_EMAIL, email)
            staff_id = staff["id"] if staff else None
            await self._refuse_if_throttled(db, request.address, staff_id, email=email)
        verified = await verify_password(password, staff["password_hash"] if staff else None)
        if staff is None or staff_id is None or not verified:
            await self._failed(request.address, staff_id=staff_id, email=email)
            raise NotAuthenticatedError("wrong email or password")
        token, csrf_token, expires_at = self._new_session()
        async with self.engine.begin() as connection:
            await (await driver_in_transaction(connection)).execute(
                _OPEN,
                uuid4(),
                _digest(token),
                _digest(csrf_token),
                None,
                None,
                staff_id,
                expires_at,
                request.address,
                request.browser,
                request.operating_system,
                request.referrer,
                self.locator.locate(request.address),
            )
        roles = frozenset(StaffRole(role) for role in staff["roles"])
        return SignedInStaff(token, csrf_token, expires_at, staff_id, staff["name"], roles)

    def _new_session(self) -> tuple[str, str, datetime]:
        """A new session's cookie value (256 random bits, never reused), CSRF token and end."""
        token = secrets.token_urlsafe(32)
        return token, csrf_token_for(token), datetime.now(UTC) + self.absolute

    async def _refuse_if_throttled(
        self, db: Any, address: str | None, subject_id: UUID | None, *, email: str | None = None
    ) -> None:
        """Refuse a sign-in after too many failures from the address or for the person."""
        failures = await db.fetchrow(
            _FAILURES_SINCE, address, subject_id, self.window_minutes, email_digest(email)
        )
        if failures["by_address"] >= self.per_address or failures["by_subject"] >= self.per_user:
            raise ThrottledError(
                "too many failed sign-ins: try again later",
                retry_after_s=60 * self.window_minutes,
            )

    async def _failed(
        self,
        address: str | None,
        *,
        user: Any = None,
        staff_id: UUID | None = None,
        email: str | None = None,
    ) -> None:
        """Count a failed sign-in against the address and the user or staff member it named."""
        async with self.engine.begin() as connection:
            db = await driver_in_transaction(connection)
            await db.execute(
                _RECORD_FAILURE,
                uuid4(),
                user["account_id"] if user else None,
                user["id"] if user else None,
                staff_id,
                address,
                email_digest(email),
            )

    async def authenticate(self, *, token: str, method: str, csrf_token: str | None) -> Principal:
        """The user behind a session cookie; a state change must also carry its CSRF token."""
        async with pooled_driver(self.engine) as db:
            row = await db.fetchrow(_SESSION, _digest(token), self.idle_minutes)
            if row is not None and datetime.now(UTC) - row["last_seen_at"] > TOUCH_EVERY:
                await db.execute(_TOUCH, row["session_id"])
        if row is None:
            raise NotAuthenticatedError("the session has ended: sign in again")
        principal = (
            user_principal(row, session_id=row["session_id"])
            if row["user_id"] is not None
            else staff_principal(row, session_id=row["session_id"])
        )
        if method not in SAFE_METHODS and not (
            csrf_token and hmac.compare_digest(_digest(csrf_token), row["csrf_hash"])
        ):
            raise PermissionDeniedError(
                f"a change made with the session cookie needs {CSRF_HEADER}"
            )
        return principal

    async def live(self, *, principal: Principal) -> list[Any]:
        """The account's sessions still signed in, most recently used first."""
        account_id = principal.require_user()
        async with pooled_driver(self.engine) as db:
            return list(await db.fetch(_LIVE, account_id, self.idle_minutes))

    async def end(self, *, principal: Principal, session_id: UUID) -> None:
        """End any session of the account at once."""
        account_id = principal.require_user()
        async with self.engine.begin() as connection:
            db = await driver_in_transaction(connection)
            ended = await db.execute(_END_OF_ACCOUNT, session_id, account_id)
        if ended.endswith(" 0"):
            raise NotFoundError("no such live session in this account")

    async def sign_out(self, *, session_id: UUID) -> None:
        """End one session."""
        async with self.engine.begin() as connection:
            await (await driver_in_transaction(connection)).execute(_END, session_id)

    async def change_password(self, *, principal: Principal, current: str | None, new: str) -> None:
        """Set a new password (the current one first, if there is one); every session ends."""
        person_id = principal.user_id if principal.kind == "user" else principal.staff_id
        table = "app_user" if principal.kind == "user" else "staff_member"
        async with pooled_driver(self.engine) as db:
            stored = await db.fetchval(_STORED_HASH[table], person_id)
            # Throttled with sign-in: a stolen session is not a way to guess the password.
            await self._refuse_if_throttled(db, None, person_id)
        if stored is not None and (current is None or not await verify_password(current, stored)):
            if principal.kind == "user":
                user = {"account_id": principal.account_id, "id": person_id}
                await self._failed(None, user=user)
            else:
                await self._failed(None, staff_id=person_id)
            raise PermissionDeniedError("the current password is wrong")
        new_hash = await hash_password(new)
        async with self.engine.begin() as connection:
            db = await driver_in_transaction(connection)
            await db.execute(_STORE_HASH[table], person_id, new_hash)
            await db.execute(_END_ALL, person_id)
