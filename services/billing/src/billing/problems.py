"""RFC 9457 problem details for every error, naming the offending field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing.errors import (
    BillingError,
    ConflictError,
    InvalidReferenceError,
    NotAuthenticatedError,
    NotFoundError,
    PermissionDeniedError,
)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://quittance.dev/problems/"

_STATUS: dict[type[BillingError], tuple[int, str, str]] = {
    NotAuthenticatedError: (401, "not-authenticated", "Not authenticated"),
    PermissionDeniedError: (403, "forbidden", "Forbidden"),
    NotFoundError: (404, "not-found", "Not found"),
    ConflictError: (409, "conflict", "Conflict"),
    InvalidReferenceError: (422, "invalid-field", "Invalid field"),
}


def problem(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem-details response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def install_problem_handlers(app: FastAPI) -> None:
    """Answer validation, domain and HTTP errors as problem details."""

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _field(tuple(e.get("loc", ()))),
                "message": e.get("msg", ""),
                "code": e.get("type"),
            }
            for e in exc.errors()
        ]
        fields = ", ".join(sorted({e["field"] for e in errors}))
        return problem(
            status=422,
            slug="validation",
            title="The request is not valid",
            detail=f"invalid field(s): {fields}",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(BillingError)
    async def on_billing_error(request: Request, exc: BillingError) -> JSONResponse:
        status, slug, title = next(
            (v for k, v in _STATUS.items() if isinstance(exc, k)),
            (400, "bad-request", "Bad request"),
        )
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem(
            status=status,
            slug=slug,
            title=title,
            detail=exc.detail,
            instance=request.url.path,
            errors=errors,
            headers=headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(
            status=exc.status_code,
            slug=f"http-{exc.status_code}",
            title=str(exc.detail),
            detail=str(exc.detail),
            instance=request.url.path,
        )
