"""Routes of webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from billing.auth.policy import Administrator
from billing.dependencies import MAX_OFFSET, ServicesDep
from billing.problems import ANY_ROUTE, AUTHENTICATED, CONFLICT, NOT_FOUND
from billing.webhooks.models import (
    DeliveryPublic,
    DeliveryStatus,
    EndpointCreate,
    EndpointPublic,
    EndpointWithSecret,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.http import links_by_id

router = APIRouter(tags=["webhooks"], responses={**ANY_ROUTE, **AUTHENTICATED})


def _endpoint(endpoint: WebhookEndpoint) -> EndpointPublic:
    return EndpointPublic(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=endpoint.event_types,
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )


def _delivery(delivery: WebhookDelivery) -> DeliveryPublic:
    pending = delivery.status is DeliveryStatus.PENDING
    return DeliveryPublic(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        body=delivery.body,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


@router.post(
    "/webhook-endpoints",
    status_code=201,
    response_model=EndpointWithSecret,
    responses={**CONFLICT, **links_by_id(201, "endpoint_id", "rotate_webhook_secret")},
)
async def create_webhook_endpoint(
    body: EndpointCreate, principal: Administrator, services: ServicesDep
) -> EndpointWithSecret:
    """Send billing events to an endpoint of yours, signed: `Quittance-Signature: t=<unix
    time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the secret shown once here. Bodies hold
    ids, numbers, amounts and statuses, never names, emails or free text."""
    endpoint, secret = await services.webhooks.create(principal=principal, request=body)
    return EndpointWithSecret(endpoint=_endpoint(endpoint), secret=secret)


@router.get("/webhook-endpoints", response_model=list[EndpointPublic])
async def list_webhook_endpoints(
    principal: Administrator, services: ServicesDep
) -> list[EndpointPublic]:
    """The account's endpoints, removed ones too."""
    return [_endpoint(e) for e in await services.webhooks.list(principal=principal)]


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=EndpointWithSecret,
    responses={**NOT_FOUND, **CONFLICT},
)
async def rotate_webhook_secret(
    endpoint_id: UUID, principal: Administrator, services: ServicesDep
) -> EndpointWithSecret:
    """A new secret, shown once; the old one keeps signing beside it for the overlap (24 hours
    by default), so the receiver switches without downtime."""
    endpoint, secret = await services.webhooks.rotate(principal=principal, endpoint_id=endpoint_id)
    return EndpointWithSecret(endpoint=_endpoint(endpoint), secret=secret)


@router.delete(
    "/webhook-endpoints/{endpoint_id}", response_model=EndpointPublic, responses=NOT_FOUND
)
async def remove_webhook_endpoint(
    endpoint_id: UUID, principal: Administrator, services: ServicesDep
) -> EndpointPublic:
    """Stop sending to the endpoint at once; what was still pending is cancelled."""
    return _endpoint(await services.webhooks.remove(principal=principal, endpoint_id=endpoint_id))


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=list[DeliveryPublic],
    responses=NOT_FOUND,
)
async def list_webhook_deliveries(
    endpoint_id: UUID,
    principal: Administrator,
    services: ServicesDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only these.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[DeliveryPublic]:
    """The endpoint's delivery log, newest first: each body sent and how its tries went."""
    found = await services.webhooks.deliveries(
        principal=principal, endpoint_id=endpoint_id, status=status, limit=limit, offset=offset
    )
    return [_delivery(d) for d in found]


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryPublic,
    responses={**NOT_FOUND, **CONFLICT},
)
async def redeliver_webhook(
    endpoint_id: UUID, delivery_id: UUID, principal: Administrator, services: ServicesDep
) -> DeliveryPublic:
    """Send a delivery again now, with the same event id and a fresh set of tries."""
    delivery = await services.webhooks.redeliver(
        principal=principal, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
    return _delivery(delivery)
