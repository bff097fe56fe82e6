"""Idempotency keys on every POST: a retried request gets the first answer, never a second effect.

One ASGI middleware keeps the promise for every route of a service. A POST with an
`Idempotency-Key` header (the IETF httpapi draft's header) claims that key for its caller:

- the first request runs and, when it succeeds (2xx from a route), its answer is kept for
  `KEPT_HOURS` and replayed to every retry, marked `Idempotent-Replayed: true`;
- the same key with another request (method, path, media type or body) answers 422;
- while the first is still running, a retry answers 409 (and may try again);
- a refused or failed request keeps nothing, so a corrected retry runs.

The caller is whom the service's `identify` says the credentials are (authenticated again for
every keyed request, so a revoked key or an ended session replays nothing), and each caller's
keys are their own. Answers that hand out a secret shown once (a response model marked
`ShownOnce`, or one that sets a cookie) and answers to callers of no account (signing up, staff
work: the account's purge would not find them) are never kept: a retry answers 409 saying the
request was completed. Callers without credentials share one space of keys, so their requests
are never compared: any retry of a held key answers 409.

A claim is a lease held by a token and renewed while the request runs; if the process dies,
the key is free again after `LEASE_S`, for the same request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import pooled_driver
from shared.http import problem_response, read_body, replaying

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HOURS = 24
LEASE_S = 60
_CLAIM_ATTEMPTS = 3
# Visible ASCII, as the draft's examples and Stripe's keys: a UUID fits, a sentence does not.
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Headers a replay repeats; anything else (cookies above all) is never kept.
_REPLAYED_HEADERS = frozenset({b"content-type", b"location", b"content-language"})
_ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """Who sent a keyed request, as the service authenticated them."""

    identity: str  # stable for the person or client: "user:<id>", "staff:<id>"
    account_id: UUID | None


Identify = Callable[[Scope], Awaitable[Caller | None]]


def idempotency_table(metadata: sa.MetaData) -> sa.Table:
    """The service's table of claimed keys and kept answers, in the service's own metadata."""
    return sa.Table(
        "idempotency_record",
        metadata,
        sa.Column("caller_digest", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("account_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("claim_token", sa.Uuid(), nullable=True, index=True, unique=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("replayable", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            index=True,
        ),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )


class ShownOnce:
    """Marks a response model that hands out a secret shown once: it is never kept for replay."""


# The claim: a new key is this request's; so is a key past its keeping time, and a key whose
# holder died unanswered (its lease lapsed) when this is the same request. Otherwise the row
# that holds it says what to answer.
_CLAIM = """
INSERT INTO idempotency_record AS r
    (caller_digest, key, request_digest, claim_token, locked_until)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (caller_digest, key) DO UPDATE
SET request_digest = EXCLUDED.request_digest, claim_token = EXCLUDED.claim_token,
    locked_until = EXCLUDED.locked_until, created_at = now(), completed_at = NULL,
    status_code = NULL, headers = NULL, body = NULL, replayable = false, account_id = NULL
WHERE (r.completed_at IS NULL AND r.locked_until < now()
        AND r.request_digest = EXCLUDED.request_digest)
    OR r.created_at < now() - make_interval(hours => $6)
RETURNING true
"""
_HELD = """
SELECT request_digest, status_code, headers, body, replayable, completed_at
FROM idempotency_record WHERE caller_digest = $1 AND key = $2
"""
_RENEW = """
UPDATE idempotency_record SET locked_until = now() + make_interval(secs => $2)
WHERE claim_token = $1 AND completed_at IS NULL
"""
_COMPLETE = """
UPDATE idempotency_record
SET status_code = $2, headers = $3, body = $4, replayable = $5, account_id = $6,
    completed_at = now(), claim_token = NULL
WHERE claim_token = $1
"""
_RELEASE = "DELETE FROM idempotency_record WHERE claim_token = $1 AND completed_at IS NULL"
_SWEEP = """
DELETE FROM idempotency_record WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_record
    WHERE created_at < now() - make_interval(hours => $2) LIMIT $1))
"""


@dataclass(frozen=True)
class _Held:
    request_digest: str
    status_code: int | None
    headers: str | None
    body: bytes | None
    replayable: bool
    completed_at: datetime | None


@dataclass
class _Answer:
    """What the app answered, as it went out."""

    status: int | None = None
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytearray | None = None
    finished: bool = False


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()


def _header(scope: Scope, name: bytes) -> bytes | None:
    values = [value for key, value in scope["headers"] if key == name]
    return b", ".join(values) if values else None


def _shown_once(scope: Scope, headers: list[tuple[bytes, bytes]]) -> bool:
    model = getattr(scope.get("route"), "response_model", None)
    marked = isinstance(model, type) and issubclass(model, ShownOnce)
    return marked or any(key.lower() == b"set-cookie" for key, _ in headers)


class IdempotencyMiddleware:
    """Keeps and replays the answers to POSTs that carry an Idempotency-Key."""

    def __init__(self, app: ASGIApp, *, engine: AsyncEngine, identify: Identify) -> None:
        self.app = app
        self.engine = engine
        self.identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw_key = _header(scope, HEADER.encode())
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not _KEY.fullmatch(key):
            await _refuse(
                scope,
                send,
                400,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
            )
            return
        body = await read_body(receive)
        caller = await self.identify(scope)
        caller_digest = _digest((caller.identity if caller else _ANONYMOUS).encode())
        request = _digest(
            scope["method"].encode(),
            scope["path"].encode(),
            scope.get("query_string", b""),
            _header(scope, b"content-type") or b"",
            body,
        )
        token = uuid.uuid4()
        held = None
        for _ in range(_CLAIM_ATTEMPTS):  # a holder may release between the two statements
            async with pooled_driver(self.engine) as connection:
                if await connection.fetchval(
                    _CLAIM, caller_digest, key, request, token, LEASE_S, KEPT_HOURS
                ):
                    break
                held = await connection.fetchrow(_HELD, caller_digest, key)
            if held is not None:
                break
        else:
            held = None
            await _answer_in_flight(scope, send)
            return
        if held is not None:
            await _answer_held(scope, send, _Held(**dict(held)), request, anonymous=not caller)
            return
        await self._run_claimed(scope, replaying(body, receive), send, token, caller)

    async def _run_claimed(
        self, scope: Scope, receive: Receive, send: Send, token: UUID, caller: Caller | None
    ) -> None:
        answer = _Answer()

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", []))
                answer.body = bytearray()
            elif message["type"] == "http.response.body" and answer.body is not None:
                answer.body += message.get("body", b"")
                answer.finished = not message.get("more_body", False)
            await send(message)

        renewing = asyncio.create_task(self._renew(token))
        try:
            await self.app(scope, receive, send_recording)
        finally:
            renewing.cancel()
            # The answer may have gone out already: what follows must run to its end.
            with anyio.CancelScope(shield=True):
                await self._settle(scope, token, caller, answer)

    async def _settle(
        self, scope: Scope, token: UUID, caller: Caller | None, answer: _Answer
    ) -> None:
        """Keep a finished success; free the key of anything else."""
        succeeded = (
            answer.status is not None
            and 200 <= answer.status < 300
            and answer.finished
            and scope.get("route") is not None
        )
        try:
            async with pooled_driver(self.engine) as connection:
                if not succeeded:
                    await connection.execute(_RELEASE, token)
                    return
                assert answer.headers is not None
                assert answer.body is not None
                account_id = caller.account_id if caller else None
                # Kept only where the account's purge finds it, and never a secret.
                replayable = account_id is not None and not _shown_once(scope, answer.headers)
                kept = [
                    [name.decode("latin-1"), value.decode("latin-1")]
                    for name, value in answer.headers
                    if name.lower() in _REPLAYED_HEADERS
                ]
                await connection.execute(
                    _COMPLETE,
                    token,
                    answer.status,
                    json.dumps(kept) if replayable else None,
                    bytes(answer.body) if replayable else None,
                    replayable,
                    account_id,
                )
        except Exception:
            # The lease lapses in LEASE_S; then only the same request may claim the key again.
            log.exception("could not record the outcome of a request with an Idempotency-Key")

    async def _renew(self, token: UUID) -> None:
        """Hold the lease while the request runs."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(LEASE_S / 3)
                try:
                    async with pooled_driver(self.engine) as connection:
                        await connection.execute(_RENEW, token, LEASE_S)
                except Exception:
                    log.exception("could not renew an Idempotency-Key's lease")


async def _answer_held(
    scope: Scope, send: Send, held: _Held, request: str, *, anonymous: bool
) -> None:
    """Answer a retry from the row that holds its key."""
    if anonymous:  # no credentials, no comparing: nothing tells one sender's body from another
        if held.completed_at is None:
            await _answer_in_flight(scope, send)
        else:
            await _answer_completed(scope, send)
        return
    if held.request_digest != request:
        await _refuse(
            scope,
            send,
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was sent with another request; use a new key for a new request",
        )
        return
    if held.completed_at is None:
        await _answer_in_flight(scope, send)
        return
    if not held.replayable:
        await _answer_completed(scope, send)
        return
    body = held.body or b""
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in json.loads(held.headers or "[]")
    ]
    headers += [
        (b"content-length", str(len(body)).encode()),
        (REPLAYED_HEADER.lower().encode(), b"true"),
    ]
    await send({"type": "http.response.start", "status": held.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer_in_flight(scope: Scope, send: Send) -> None:
    await _refuse(
        scope,
        send,
        409,
        "request-in-flight",
        "Request in flight",
        "a request with this Idempotency-Key is still running; try again shortly",
        retry_after=True,
    )


async def _answer_completed(scope: Scope, send: Send) -> None:
    await _refuse(
        scope,
        send,
        409,
        "request-completed",
        "Request completed",
        "a request with this Idempotency-Key was completed; its answer is not repeated "
        "(it held a secret shown once, or belonged to no account)",
    )


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    retry_after: bool = False,
) -> None:
    response = problem_response(
        status=status,
        slug=slug,
        title=title,
        detail=detail,
        instance=scope["path"],
        errors=[{"field": "Idempotency-Key", "message": detail}],
        headers={"Retry-After": "1"} if retry_after else None,
    )
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def sweep_idempotency_records(engine: AsyncEngine, *, batch: int = 1000) -> int:
    """Delete the records past their keeping time, in batches; how many went."""
    deleted = 0
    while True:
        async with pooled_driver(engine) as connection:
            status = await connection.execute(_SWEEP, batch, KEPT_HOURS)
        count = int(status.split()[-1])
        deleted += count
        if count < batch:
            return deleted


async def sweep_idempotency_records_forever(engine: AsyncEngine, *, interval_s: float) -> None:
    """Sweep now and then; a failure waits for the next round."""
    while True:
        try:
            await sweep_idempotency_records(engine)
        except Exception:
            log.exception("the idempotency record sweep failed; trying again next round")
        await asyncio.sleep(interval_s)
