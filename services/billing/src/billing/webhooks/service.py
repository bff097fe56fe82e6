"""Webhook endpoints: register, list, rotate the secret, remove; the delivery log and manual
redelivery; and the fan-out of billing events into deliveries."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
from sqlalchemy import func, update
from sqlmodel import col, select

from billing.auth.models import Principal
from billing.errors import ConflictError, InvalidReferenceError, NotFoundError
from billing.settings import WebhookSettings
from billing.webhooks.dispatcher import secret_aad
from billing.webhooks.domain import is_public_address, public_data, webhook_body
from billing.webhooks.models import (
    MAX_ENDPOINTS_PER_ACCOUNT,
    DeliveryStatus,
    EndpointCreate,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.contracts import EVENT_TYPES, Envelope
from shared.crypto import encrypt_personal
from shared.db import SessionFactory
from shared.keystore import KeyStore
from shared.unit_of_work import UnitsOfWork, Work

_SECRET = ("secret",)
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

# One delivery per enabled endpoint of the account that asked for the event type; none for a
# terminated account; a redelivered event finds its deliveries already there.
_FAN_OUT = """
INSERT INTO webhook_delivery (id, account_id, endpoint_id, event_id, event_type, body, status,
    attempts, next_attempt_at)
SELECT gen_random_uuid(), e.account_id, e.id, $2::uuid, $3::text, $4::text, 'PENDING', 0, now()
FROM webhook_endpoint e JOIN account a ON a.id = e.account_id
WHERE e.account_id = $1 AND e.disabled_at IS NULL AND e.event_types ? $3::text
    AND a.status <> 'TERMINATED'
ON CONFLICT (endpoint_id, event_id) DO NOTHING
"""


async def fan_out(event: Envelope[Any], work: Work) -> None:
    """Queue a billing event for the account's endpoints, its personal fields left out."""
    data = public_data(
        EVENT_TYPES[event.type], event.data.model_dump(mode="json", exclude={"account_id"})
    )
    body = webhook_body(
        event_id=str(event.id),
        event_type=event.type,
        created_at=event.time.isoformat(),
        account_id=str(event.data.account_id),
        data=data,
    )
    db = await work.driver()
    await db.execute(_FAN_OUT, event.data.account_id, event.id, event.type, body)


def new_secret() -> str:
    """A signing secret: 256 random bits."""
    return f"whsec_{secrets.token_urlsafe(32)}"


class WebhookService:
    """An account's webhook endpoints and their delivery log."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        units: UnitsOfWork,
        keys: KeyStore,
        settings: WebhookSettings,
    ) -> None:
        self.sessions = sessions
        self.units = units
        self.keys = keys
        self.settings = settings

    def _check_url(self, url: str) -> None:
        """Refuse what can never be delivered to: a scheme not allowed, credentials in the URL,
        a private address written out. Names are resolved, and checked, at every delivery."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise InvalidReferenceError(f"not a URL: {exc}", field="url") from exc
        if parsed.scheme != "https" and not (parsed.scheme == "http" and self.settings.allow_http):
            raise InvalidReferenceError("must be an https URL", field="url")
        if parsed.userinfo:
            raise InvalidReferenceError("must not hold credentials", field="url")
        if parsed.fragment:
            raise InvalidReferenceError("must not have a #fragment", field="url")
        host = parsed.host.lower().rstrip(".")
        if self.settings.allow_private_addresses:
            return
        if host in _LOCAL_NAMES or host.endswith(".localhost") or host.endswith(".local"):
            raise InvalidReferenceError("a local address is not allowed", field="url")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        if not is_public_address(host):
            raise InvalidReferenceError(
                "a private, loopback or link-local address is not allowed", field="url"
            )

    async def _seal(self, account_id: UUID, endpoint_id: UUID, secret: str) -> str:
        key = await self.keys.key_for_writing(account_id)
        sealed: str = encrypt_personal(
            {"secret": secret}, _SECRET, key, aad=secret_aad(endpoint_id)
        )["secret"]
        return sealed

    async def create(
        self, *, principal: Principal, request: EndpointCreate
    ) -> tuple[WebhookEndpoint, str]:
        """Register an endpoint; returns it and its secret (shown once)."""
        account_id = principal.require_user()
        self._check_url(request.url)
        endpoint_id, secret = uuid4(), new_secret()
        sealed = await self._seal(account_id, endpoint_id, secret)
        async with self.units() as work:
            count = await work.session.exec(
                select(func.count())
                .select_from(WebhookEndpoint)
                .where(
                    WebhookEndpoint.account_id == account_id,
                    col(WebhookEndpoint.disabled_at).is_(None),
                )
            )
            if count.one() >= MAX_ENDPOINTS_PER_ACCOUNT:
                raise ConflictError(
                    f"an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} endpoints", field="url"
                )
            endpoint = WebhookEndpoint(
                id=endpoint_id,
                account_id=account_id,
                url=request.url,
                description=request.description,
                event_types=sorted({t.value for t in request.event_types}),
                secret_sealed=sealed,
                created_by_user_id=principal.user_id,
            )
            work.session.add(endpoint)
        return endpoint, secret

    async def _endpoint(self, work: Work, account_id: UUID, endpoint_id: UUID) -> WebhookEndpoint:
        found = await work.session.exec(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.account_id == account_id, WebhookEndpoint.id == endpoint_id)
            .with_for_update()
        )
        endpoint = found.first()
        if endpoint is None:
            raise NotFoundError("no such webhook endpoint in this account")
        return endpoint

    async def list(self, *, principal: Principal) -> Sequence[WebhookEndpoint]:
        """The account's endpoints, removed ones too, newest first."""
        account_id = principal.require_user()
        async with self.sessions() as session:
            found = await session.exec(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.account_id == account_id)
                .order_by(col(WebhookEndpoint.created_at).desc(), col(WebhookEndpoint.id))
            )
            return found.all()

    async def rotate(
        self, *, principal: Principal, endpoint_id: UUID
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret; the old one still signs (a second signature) for the overlap, so the
        receiver can switch without missing a delivery."""
        account_id = principal.require_user()
        secret = new_secret()
        sealed = await self._seal(account_id, endpoint_id, secret)
        async with self.units() as work:
            endpoint = await self._endpoint(work, account_id, endpoint_id)
            if endpoint.disabled_at is not None:
                raise ConflictError("this endpoint was removed", field="endpoint_id")
            endpoint.previous_secret_sealed = endpoint.secret_sealed
            endpoint.previous_secret_expires_at = datetime.now(UTC) + timedelta(
                hours=self.settings.rotation_overlap_hours
            )
            endpoint.secret_sealed = sealed
            work.session.add(endpoint)
        return endpoint, secret

    async def remove(self, *, principal: Principal, endpoint_id: UUID) -> WebhookEndpoint:
        """Stop sending to an endpoint at once: what is still pending is cancelled."""
        account_id = principal.require_user()
        async with self.units() as work:
            endpoint = await self._endpoint(work, account_id, endpoint_id)
            if endpoint.disabled_at is None:
                endpoint.disabled_at = datetime.now(UTC)
                work.session.add(endpoint)
                await work.session.exec(
                    update(WebhookDelivery)
                    .where(
                        col(WebhookDelivery.endpoint_id) == endpoint.id,
                        col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    )
                    .values(status=DeliveryStatus.CANCELLED)
                )
        return endpoint

    async def deliveries(
        self,
        *,
        principal: Principal,
        endpoint_id: UUID,
        status: DeliveryStatus | None,
        limit: int,
        offset: int,
    ) -> Sequence[WebhookDelivery]:
        """An endpoint's delivery log, newest first."""
        account_id = principal.require_user()
        query = select(WebhookDelivery).where(
            WebhookDelivery.account_id == account_id, WebhookDelivery.endpoint_id == endpoint_id
        )
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        query = query.order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id))
        async with self.sessions() as session:
            known = await session.exec(
                select(WebhookEndpoint.id).where(
                    WebhookEndpoint.account_id == account_id, WebhookEndpoint.id == endpoint_id
                )
            )
            if known.first() is None:
                raise NotFoundError("no such webhook endpoint in this account")
            return (await session.exec(query.limit(limit).offset(offset))).all()

    async def redeliver(
        self, *, principal: Principal, endpoint_id: UUID, delivery_id: UUID
    ) -> WebhookDelivery:
        """Send a delivery again now (a dead letter, a failure, or one already delivered),
        with the same event id, and a fresh set of tries."""
        account_id = principal.require_user()
        async with self.units() as work:
            endpoint = await self._endpoint(work, account_id, endpoint_id)
            if endpoint.disabled_at is not None:
                raise ConflictError("this endpoint was removed", field="endpoint_id")
            found = await work.session.exec(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.account_id == account_id,
                    WebhookDelivery.endpoint_id == endpoint_id,
                    WebhookDelivery.id == delivery_id,
                )
                .with_for_update()
            )
            delivery: WebhookDelivery | None = found.first()
            if delivery is None:
                raise NotFoundError("no such delivery of this endpoint")
            if delivery.status is DeliveryStatus.PENDING:
                raise ConflictError("this delivery is still being tried", field="status")
            delivery.status = DeliveryStatus.PENDING
            delivery.attempts = 0
            delivery.next_attempt_at = datetime.now(UTC)
            work.session.add(delivery)
        return delivery
