"""Idempotency keys on every POST: a retried request gets the first answer, never a second effect.

One ASGI middleware keeps the promise for every route of a service. A POST with an
`Idempotency-Key` header (the IETF httpapi draft's header) claims that key for its caller:

- the first request runs and, when it succeeds (1xx to 3xx), its answer is kept for
  `KEPT_HOURS` and replayed to every retry, marked `Idempotent-Replayed: true`;
- the same key with another request (method, path, media type or body) answers 422;
- while the first is still running, a retry answers 409 (and may try again);
- a refused or failed request (4xx, 5xx) keeps nothing, so a corrected retry runs.

The caller is who the credentials say (a digest of the Authorization and Cookie headers), so
nobody replays another's answer. Answers that hand out a secret shown once (a response model
marked `ShownOnce`, or one that sets a cookie), and answers that belong to no account (signing
up, staff work: the account's purge would not find them), are never kept: their retries answer
409 saying the request was completed. The app names the account by setting
`request.state.account_id` when it authenticates the caller. A claim is a lease: if the process
dies mid-request, the key is free again after `LEASE_S`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

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
# Visible ASCII, as the draft's examples and Stripe's keys: a UUID fits, a sentence does not.
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Headers a replay repeats; anything else (cookies above all) is never kept.
_REPLAYED_HEADERS = frozenset({b"content-type", b"location", b"content-language"})


def idempotency_table(metadata: sa.MetaData) -> sa.Table:
    """The service's table of claimed keys and kept answers, in the service's own metadata."""
    return sa.Table(
        "idempotency_record",
        metadata,
        sa.Column("caller_digest", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("account_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
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


# The claim: a new key, or one whose lease lapsed unanswered, or one older than its keeping
# time, is this request's; otherwise the row that holds it says what to answer.
_CLAIM = """
INSERT INTO idempotency_record AS r (caller_digest, key, request_digest, locked_until)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (caller_digest, key) DO UPDATE
SET request_digest = EXCLUDED.request_digest, locked_until = EXCLUDED.locked_until,
    created_at = now(), completed_at = NULL, status_code = NULL, headers = NULL, body = NULL,
    replayable = false, account_id = NULL
WHERE (r.completed_at IS NULL AND r.locked_until < now())
    OR r.created_at < now() - make_interval(hours => $5)
RETURNING true
"""
_HELD = """
SELECT request_digest, status_code, headers, body, replayable, completed_at
FROM idempotency_record WHERE caller_digest = $1 AND key = $2
"""
_COMPLETE = """
UPDATE idempotency_record
SET status_code = $3, headers = $4, body = $5, replayable = $6, account_id = $7,
    completed_at = now()
WHERE caller_digest = $1 AND key = $2 AND request_digest = $8
"""
_RELEASE = """
DELETE FROM idempotency_record
WHERE caller_digest = $1 AND key = $2 AND request_digest = $3 AND completed_at IS NULL
"""
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


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()


def _header(scope: Scope, name: bytes) -> bytes:
    return b", ".join(value for key, value in scope["headers"] if key == name)


def _shown_once(scope: Scope, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    model = getattr(scope.get("route"), "response_model", None)
    marked = isinstance(model, type) and issubclass(model, ShownOnce)
    return marked or any(key.lower() == b"set-cookie" for key, _ in headers)


def _account_of(scope: Scope) -> UUID | None:
    account_id = scope.get("state", {}).get("account_id")
    return account_id if isinstance(account_id, UUID) else None


class IdempotencyMiddleware:
    """Keeps and replays the answers to POSTs that carry an Idempotency-Key."""

    def __init__(self, app: ASGIApp, *, engine: AsyncEngine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw_key = _header(scope, HEADER.encode())
        if not raw_key:
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
        caller = _digest(_header(scope, b"authorization"), _header(scope, b"cookie"))
        request = _digest(
            scope["method"].encode(),
            scope["path"].encode(),
            scope.get("query_string", b""),
            _header(scope, b"content-type"),
            body,
        )
        async with pooled_driver(self.engine) as connection:
            claimed = await connection.fetchval(_CLAIM, caller, key, request, LEASE_S, KEPT_HOURS)
            held = None if claimed else await connection.fetchrow(_HELD, caller, key)
        if held is not None:
            await _answer_held(scope, send, _Held(**dict(held)), request)
            return
        if not claimed:  # the holder was swept between the two statements: run as new
            await self.app(scope, replaying(body, receive), send)
            return
        await self._run_claimed(scope, replaying(body, receive), send, caller, key, request)

    async def _run_claimed(
        self, scope: Scope, receive: Receive, send: Send, caller: str, key: str, request: str
    ) -> None:
        started: Message | None = None
        chunks: list[bytes] = []

        async def send_recording(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        completed = False
        try:
            await self.app(scope, receive, send_recording)
            if started is not None and started["status"] < 400:
                headers = list(started.get("headers", []))
                account_id = _account_of(scope)
                # Kept only where the account's purge finds it, and never a secret.
                replayable = account_id is not None and not _shown_once(scope, headers)
                kept = [
                    [name.decode("latin-1"), value.decode("latin-1")]
                    for name, value in headers
                    if name.lower() in _REPLAYED_HEADERS
                ]
                async with pooled_driver(self.engine) as connection:
                    await connection.execute(
                        _COMPLETE,
                        caller,
                        key,
                        started["status"],
                        json.dumps(kept) if replayable else None,
                        b"".join(chunks) if replayable else None,
                        replayable,
                        account_id,
                        request,
                    )
                completed = True
        finally:
            if not completed:
                async with pooled_driver(self.engine) as connection:
                    await connection.execute(_RELEASE, caller, key, request)


async def _answer_held(scope: Scope, send: Send, held: _Held, request: str) -> None:
    """Answer a retry from the row that holds its key."""
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
        await _refuse(
            scope,
            send,
            409,
            "request-in-flight",
            "Request in flight",
            "a request with this Idempotency-Key is still running; try again shortly",
            retry_after=True,
        )
        return
    if not held.replayable:
        await _refuse(
            scope,
            send,
            409,
            "request-completed",
            "Request completed",
            "a request with this Idempotency-Key was completed; its answer is not repeated "
            "(it held a secret shown once, or belonged to no account)",
        )
        return
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in json.loads(held.headers or "[]")
    ]
    headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": held.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": held.body or b""})


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
