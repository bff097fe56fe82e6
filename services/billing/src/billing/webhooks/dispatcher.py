"""The webhook dispatcher: takes due deliveries (once across instances), posts them signed, and
records each outcome; retries with backoff, dead-letters after the last try.

A delivery is claimed with a lease (FOR UPDATE SKIP LOCKED, then its next attempt moved past the
lease) and its outcome written after the POST: a dispatcher killed in between leaves it to be
sent again when the lease ends. Delivery is at least once; receivers deduplicate on the event id,
which is the same on every try.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.settings import WebhookSettings
from billing.webhooks.domain import (
    SIGNATURE_HEADER,
    is_public_address,
    is_retryable,
    retry_delay,
    signature,
)
from billing.webhooks.models import DeliveryStatus
from shared.crypto import decrypt_personal
from shared.db import pooled_driver
from shared.keystore import KeyStore

log = logging.getLogger(__name__)
_SECRET = ("secret",)

# Due deliveries with their endpoint and account, leased: another dispatcher skips them.
_CLAIM = """
WITH due AS (
    SELECT id FROM webhook_delivery
    WHERE status = 'PENDING' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_delivery d SET next_attempt_at = now() + make_interval(secs => $2)
FROM due, webhook_endpoint e, account a
WHERE d.id = due.id AND e.id = d.endpoint_id AND a.id = d.account_id
RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.body, d.attempts, e.url,
    e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires_at,
    e.disabled_at IS NOT NULL AS disabled, a.status = 'TERMINATED' AS terminated
"""
_RECORD = """
UPDATE webhook_delivery d SET status = r.status::deliverystatus,
    attempts = d.attempts + CASE WHEN r.status = 'CANCELLED' THEN 0 ELSE 1 END,
    next_attempt_at = r.next_at, last_attempt_at = r.at, last_status_code = r.code,
    last_error = r.error, delivered_at = CASE WHEN r.status = 'DELIVERED' THEN r.at END
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::text[])
    AS r(id, status, next_at, at, code, error)
WHERE d.id = r.id
"""


def secret_aad(endpoint_id: UUID) -> bytes:
    """What a sealed endpoint secret is bound to: it opens for that endpoint only."""
    return f"webhook-secret|{endpoint_id}".encode()


@dataclass(frozen=True)
class Outcome:
    """What one POST came to."""

    status: int | None  # the HTTP status; None: no answer (timeout, refused, unresolvable)
    error: str | None = None
    retry_after_s: float | None = None
    refused: bool = False  # never tried: the address is not allowed

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """POSTs to an endpoint, resolving its host first and connecting only to public addresses
    (SSRF): the address checked is the address used, so DNS cannot change it in between."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.allow_private = settings.allow_private_addresses
        self.client = httpx.AsyncClient(
            timeout=settings.timeout_s,
            follow_redirects=False,  # a redirect could lead anywhere, inside too
            limits=httpx.Limits(max_connections=settings.concurrency),
            trust_env=False,  # no proxy from the environment between us and the check
        )

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            return [host] if _is_ip(host) else await _resolve(host, port)
        except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode (a long label)
            return []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """One attempt; never raises for the endpoint's faults."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            return Outcome(None, "invalid URL", refused=True)
        host, port = target.host, target.port or (443 if target.scheme == "https" else 80)
        addresses = await self._addresses(host, port)
        if not addresses:
            return Outcome(None, "the host did not resolve")
        if not self.allow_private and not all(is_public_address(a) for a in addresses):
            return Outcome(None, "a private, loopback or link-local address: refused", refused=True)
        pinned = target.copy_with(host=addresses[0])
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        try:
            response = await self.client.post(
                pinned,
                content=body,
                headers={**headers, "Host": target.netloc.decode("ascii")},
                extensions=extensions,
            )
        except httpx.TimeoutException:
            return Outcome(None, "timed out")
        except httpx.HTTPError as exc:
            return Outcome(None, type(exc).__name__)
        retry_after = _seconds(response.headers.get("retry-after"))
        return Outcome(response.status_code, retry_after_s=retry_after)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def _is_ip(host: str) -> bool:
    try:
        is_public_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: the backoff stands


class WebhookDispatcher:
    """Sends due deliveries in batches, a bounded number at once."""

    def __init__(self, *, engine: AsyncEngine, keys: KeyStore, settings: WebhookSettings) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings
        self.sender = WebhookSender(settings)
        self._secrets: dict[str, str] = {}  # sealed -> opened, for the endpoints in use

    async def run_forever(self) -> None:
        """Drain what is due, then wait a moment; an error waits for the next round."""
        while True:
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("webhook dispatch failed; trying again shortly")
                sent = 0
            if sent < self.settings.batch_size:
                await asyncio.sleep(self.settings.poll_interval_s)

    async def send_due(self) -> int:
        """Claim one batch of due deliveries, send them, record the outcomes; how many."""
        async with pooled_driver(self.engine) as db, db.transaction():
            rows = await db.fetch(_CLAIM, self.settings.batch_size, self.settings.lease_s)
        if not rows:
            return 0
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def attempt(row: Any) -> tuple[UUID, DeliveryStatus, datetime, Outcome]:
            async with gate:
                return await self._attempt(row)

        results = await asyncio.gather(*(attempt(row) for row in rows))
        now = datetime.now(UTC)
        async with pooled_driver(self.engine) as db, db.transaction():
            await db.execute(
                _RECORD,
                [r[0] for r in results],
                [r[1].name for r in results],
                [r[2] for r in results],
                [now] * len(results),
                [r[3].status for r in results],
                [r[3].error for r in results],
            )
        return len(rows)

    async def _attempt(self, row: Any) -> tuple[UUID, DeliveryStatus, datetime, Outcome]:
        now = datetime.now(UTC)
        if row["disabled"] or row["terminated"]:
            return row["id"], DeliveryStatus.CANCELLED, now, Outcome(None, "cancelled")
        secrets = [await self._open(row["endpoint_id"], row["secret_sealed"])]
        expires = row["previous_secret_expires_at"]
        if row["previous_secret_sealed"] and expires is not None and expires > now:
            secrets.append(await self._open(row["endpoint_id"], row["previous_secret_sealed"]))
        body = row["body"].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Quittance-Webhooks/1",
            "Quittance-Event-Id": str(row["event_id"]),
            "Quittance-Event-Type": row["event_type"],
            SIGNATURE_HEADER: signature(secrets, body, int(time.time())),
        }
        try:
            outcome = await self.sender.post(row["url"], body, headers)
        except Exception as exc:
            # One endpoint's surprise must not stop the batch: every other account's deliveries
            # in it would wait for it forever.
            log.exception("webhook delivery %s failed unexpectedly", row["id"])
            outcome = Outcome(None, type(exc).__name__)
        attempt = row["attempts"] + 1
        if outcome.delivered:
            return row["id"], DeliveryStatus.DELIVERED, now, outcome
        if outcome.refused or not is_retryable(outcome.status):
            return row["id"], DeliveryStatus.FAILED, now, outcome
        if attempt >= self.settings.max_attempts:
            log.warning("webhook delivery %s dead-lettered after %d attempts", row["id"], attempt)
            return row["id"], DeliveryStatus.DEAD, now, outcome
        later = now + retry_delay(
            attempt,
            first_s=self.settings.first_retry_s,
            max_s=self.settings.max_retry_s,
            retry_after_s=outcome.retry_after_s,
        )
        return row["id"], DeliveryStatus.PENDING, later, outcome

    async def _open(self, endpoint_id: UUID, sealed: str) -> str:
        opened = self._secrets.get(sealed)
        if opened is None:
            data = await decrypt_personal(
                {"secret": sealed}, _SECRET, self.keys.key, aad=secret_aad(endpoint_id)
            )
            opened = str(data["secret"])
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            self._secrets[sealed] = opened
        return opened

    async def close(self) -> None:
        """Close the sender."""
        await self.sender.close()
