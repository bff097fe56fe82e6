"""Routes for operators and probes: health and metrics (outside the public API document)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 when the database and broker answer, the consumer progresses and the relay publishes."""
    healthy, checks = await request.app.state.runtime.health()
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics, consumer lag measured at the scrape."""
    return Response(await request.app.state.runtime.metrics_text(), media_type=CONTENT_TYPE_LATEST)
