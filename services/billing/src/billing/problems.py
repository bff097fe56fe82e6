"""Billing's refusals as RFC 9457 problem details, naming the offending field.

Validation errors, HTTP errors, outages (503) and anything unexpected (500) are answered by the
shared handlers (`shared.http`); this adds billing's own kinds of refusal.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from billing.errors import (
    BadSignatureError,
    BillingError,
    ConflictError,
    GatewayUnavailableError,
    InvalidReferenceError,
    NotAuthenticatedError,
    NotFoundError,
    PaymentsOffError,
    PermissionDeniedError,
    ThrottledError,
)
from shared.http import problem_response, problem_responses

# What the OpenAPI document lists: every route can meet these...
ANY_ROUTE = problem_responses(400, 413, 422, 500, 503)
# ...a route behind an API key these, and the others by what the route does.
AUTHENTICATED = problem_responses(401, 403)
NOT_FOUND = problem_responses(404)
CONFLICT = problem_responses(409)
THROTTLED = problem_responses(429)
GATEWAY = problem_responses(502)

_STATUS: dict[type[BillingError], tuple[int, str, str]] = {
    NotAuthenticatedError: (401, "not-authenticated", "Not authenticated"),
    PermissionDeniedError: (403, "forbidden", "Forbidden"),
    NotFoundError: (404, "not-found", "Not found"),
    ConflictError: (409, "conflict", "Conflict"),
    InvalidReferenceError: (422, "invalid-field", "Invalid field"),
    ThrottledError: (429, "too-many-requests", "Too many requests"),
    BadSignatureError: (400, "invalid-signature", "Invalid signature"),
    GatewayUnavailableError: (502, "gateway-unavailable", "Payment gateway unavailable"),
    PaymentsOffError: (409, "payments-off", "Payments are off"),
}


def install_problem_handlers(app: FastAPI) -> None:
    """Answer billing's domain errors as problem details."""

    @app.exception_handler(BillingError)
    async def on_billing_error(request: Request, exc: BillingError) -> JSONResponse:
        status, slug, title = next(
            (v for k, v in _STATUS.items() if isinstance(exc, k)),
            (400, "bad-request", "Bad request"),
        )
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, ThrottledError):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return problem_response(
            status=status,
            slug=slug,
            title=title,
            detail=exc.detail,
            instance=request.url.path,
            errors=errors,
            headers=headers,
        )
