"""Retention's small HTTP surface: sagas in flight for operators, and their health."""

from __future__ import annotations

import hmac
import json
from typing import Any

from faststream.asgi import AsgiResponse, get

from retention.services import RetentionService
from shared.health import Check, HealthCheck


def saga_routes(service: RetentionService, operator_token: str) -> list[tuple[str, Any]]:
    """`GET /sagas`: every termination in flight and its step, those needing a person first."""

    @get(include_in_schema=False)
    async def sagas(scope: Any) -> AsgiResponse:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").removeprefix(b"Bearer ")
        if not hmac.compare_digest(given, operator_token.encode()):
            return AsgiResponse(
                b'{"title": "the operator token is required"}',
                status_code=401,
                headers={"content-type": "application/problem+json"},
            )
        body = [
            {
                # Ids and states only: an operator sees where a saga is, not whose it is.
                "saga_id": str(saga.id),
                "status": saga.status,
                "step_attempt": saga.step_attempt,
                "step_deadline_at": saga.step_deadline_at.isoformat(),
                "needs_attention": saga.needs_attention,
                "waiting_for": service.waiting_for(saga),
            }
            for saga in await service.sagas()
        ]
        return AsgiResponse(
            json.dumps(body).encode(), status_code=200, headers={"content-type": "application/json"}
        )

    return [("/sagas", sagas)]


def sagas_health(service: RetentionService) -> HealthCheck:
    """Unhealthy while a saga needs a person; its overdue steps are named."""

    async def sagas() -> Check:
        stuck = [saga for saga in await service.sagas() if saga.needs_attention]
        if stuck:
            return Check("sagas", False, f"{len(stuck)} saga(s) need a person")
        return Check("sagas", True)

    return sagas
