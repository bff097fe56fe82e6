"""The shared HTTP hardening: problem details, body limit, security headers, fallback handlers
that log no values, the engine that hides SQL parameters, and Swagger UI without a CDN."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg.exceptions
import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from shared.db import create_engine
from shared.http import (
    API_CSP,
    DOCS_CSP,
    BodyLimitMiddleware,
    CardNumberRefusalMiddleware,
    Problem,
    SecurityHeadersMiddleware,
    harden_api,
    install_fallback_handlers,
    mount_offline_docs,
    problem_response,
    problem_responses,
)

MARK = "SECRET-MARK-123"


def client(app: Any) -> httpx.AsyncClient:
    """A client that raises whatever exception escapes the app, as a server would log it."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


# --- problem details ---------------------------------------------------------------------------


async def test_problem_response_is_rfc9457_json() -> None:
    response = problem_response(
        status=409,
        slug="conflict",
        title="Conflict",
        detail="already paid",
        instance="/invoices/1",
        errors=[{"field": "state", "message": "already paid", "code": "paid"}],
        headers={"X-Extra": "1"},
    )
    assert response.status_code == 409
    assert response.media_type == "application/problem+json"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-extra"] == "1"
    body = Problem.model_validate_json(bytes(response.body))
    assert body.type == "https://quittance.dev/problems/conflict"
    assert (body.title, body.status, body.detail, body.instance) == (
        "Conflict",
        409,
        "already paid",
        "/invoices/1",
    )
    assert body.errors is not None
    assert body.errors[0].field == "state"


async def test_problem_response_leaves_out_empty_errors() -> None:
    response = problem_response(status=404, slug="not-found", title="t", detail="d", instance="/")
    assert b"errors" not in bytes(response.body)


def test_problem_responses_document_the_problem_schema_under_problem_json() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}", responses=problem_responses(404, 422, 503))
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    responses = app.openapi()["paths"]["/items/{item_id}"]["get"]["responses"]
    for status in ("404", "422", "503"):
        content = responses[status]["content"]
        assert list(content) == ["application/problem+json"], "documented as problem+json only"
        schema = content["application/problem+json"]["schema"]
        assert set(schema["required"]) == {"type", "title", "status", "detail", "instance"}
        errors = schema["properties"]["errors"]["anyOf"][0]
        assert set(errors["items"]["properties"]) == {"field", "message", "code"}
        assert "$ref" not in str(schema), "no reference that would not resolve in the document"
        assert responses[status]["description"]
    assert responses["404"]["description"] != responses["503"]["description"]


def test_problem_responses_describe_every_common_status() -> None:
    statuses = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
    entries = problem_responses(*statuses)
    assert set(entries) == set(statuses)
    assert len({e["description"] for e in entries.values()}) == len(statuses)


# --- body limit --------------------------------------------------------------------------------


async def run_asgi(app: Any, scope: Scope, chunks: list[bytes]) -> tuple[list[Message], int]:
    """Call a pure ASGI app; return the messages it sent and how many body reads it made."""
    sent: list[Message] = []
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        if reads > len(chunks):
            return {"type": "http.disconnect"}
        return {
            "type": "http.request",
            "body": chunks[reads - 1],
            "more_body": reads < len(chunks),
        }

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, reads


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "server": ("test", 80),
        "headers": headers or [],
    }


async def test_a_declared_oversize_body_is_refused_before_it_is_read() -> None:
    called = False

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal called
        called = True

    middleware = BodyLimitMiddleware(inner, max_bytes=10)
    sent, reads = await run_asgi(middleware, http_scope([(b"content-length", b"11")]), [b"x" * 11])
    assert not called
    assert reads == 0
    assert sent[0]["status"] == 413
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"connection"] == b"close"
    body = Problem.model_validate_json(sent[1]["body"])
    assert body.type.endswith("/payload-too-large")
    assert "10 bytes" in body.detail
    assert body.instance == "/upload"


async def test_a_streamed_body_stops_at_the_limit_and_the_app_never_sees_it_whole() -> None:
    seen: list[bytes] = []
    outcome: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while True:
                message = await receive()
                seen.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except StarletteHTTPException:
            outcome.append("cut")
            raise
        outcome.append("whole")  # pragma: no cover - the test fails if this happens
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = BodyLimitMiddleware(inner, max_bytes=10)
    sent, reads = await run_asgi(middleware, http_scope(), [b"x" * 4] * 100)
    assert outcome == ["cut"]
    assert sum(map(len, seen)) <= 10
    assert reads == 3, "reading stops at the chunk that passes the limit"
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413


async def test_a_body_at_the_limit_passes_unchanged() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body())

    app.add_middleware(BodyLimitMiddleware, max_bytes=10)
    async with client(app) as http:
        response = await http.post("/echo", content=b"0123456789")
    assert response.status_code == 200
    assert response.content == b"0123456789"


async def test_a_chunked_upload_over_the_limit_is_refused_without_running_the_endpoint() -> None:
    app = FastAPI()
    handled = False
    pulled = 0

    @app.post("/upload")
    async def upload(body: Upload) -> dict[str, str]:
        nonlocal handled
        handled = True
        return {"text": body.text}

    install_fallback_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(10_000):  # 10 MB if buffered whole
            pulled += 1
            yield b"x" * 1024

    async with client(app) as http:
        response = await http.post(
            "/upload", content=chunks(), headers={"content-type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/payload-too-large")
    assert not handled
    assert pulled <= 3, "the body is counted as it streams, not buffered"


async def test_the_body_limit_lets_other_scopes_through() -> None:
    received: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(scope)
        await receive()

    middleware = BodyLimitMiddleware(inner, max_bytes=0)
    scope: Scope = {"type": "lifespan"}
    sent, reads = await run_asgi(middleware, scope, [b"not counted"])
    assert received == [scope]
    assert reads == 1
    assert sent == []


def test_a_negative_body_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        BodyLimitMiddleware(FastAPI(), max_bytes=-1)


class Upload(BaseModel):
    text: str


# --- security headers --------------------------------------------------------------------------


def headered_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/account")
    async def account(response: Response) -> dict[str, str]:
        response.headers["Server"] = "hand-rolled/1.0"
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        return {"api_key": "k"}

    @app.get("/public")
    async def public(response: Response) -> dict[str, str]:
        response.headers["Cache-Control"] = "public, max-age=60"
        return {}

    @app.get("/docs")
    async def docs() -> dict[str, str]:
        return {}

    @app.get("/docs/static/x.js")
    async def asset() -> dict[str, str]:
        return {}

    @app.post("/boom")
    async def boom() -> None:
        raise RuntimeError(MARK)

    harden_api(app, max_body_bytes=8)
    return app


def assert_secured(response: httpx.Response, csp: str = API_CSP) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == csp
    assert response.headers.get_list("x-frame-options") == ["DENY"]
    assert response.headers["cross-origin-resource-policy"] == "same-origin"
    assert "server" not in response.headers


async def test_every_response_carries_the_security_headers() -> None:
    async with client(headered_app()) as http:
        ok = await http.get("/account")
        missing = await http.get("/nowhere")
        too_large = await http.post("/boom", content=b"123456789")
        failed = await http.post("/boom")
    assert [r.status_code for r in (ok, missing, too_large, failed)] == [200, 404, 413, 500]
    for response in (ok, missing, too_large, failed):
        assert_secured(response)
        assert response.headers["cache-control"] == "no-store"


async def test_a_response_keeps_its_own_cache_control() -> None:
    async with client(headered_app()) as http:
        response = await http.get("/public")
    assert_secured(response)
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_the_docs_pages_get_the_docs_policy() -> None:
    async with client(headered_app()) as http:
        page = await http.get("/docs")
        asset = await http.get("/docs/static/x.js")
        api = await http.get("/docsx")
    assert_secured(page, DOCS_CSP)
    assert_secured(asset, DOCS_CSP)
    assert api.headers["content-security-policy"] == API_CSP


async def test_docs_paths_are_matched_below_the_root_path() -> None:
    seen: list[dict[str, str]] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: Message) -> None:
        seen.append({k.decode(): v.decode() for k, v in message["headers"]})

    async def receive() -> Message:  # pragma: no cover - never read
        return {"type": "http.disconnect"}

    middleware = SecurityHeadersMiddleware(inner)
    await middleware(
        {**http_scope(), "path": "/billing/docs", "root_path": "/billing"}, receive, send
    )
    assert seen[0]["content-security-policy"] == DOCS_CSP


# --- fallback handlers -------------------------------------------------------------------------


def failing_app(exc: Exception) -> FastAPI:
    app = FastAPI()

    @app.get("/invoices/{invoice_id}")
    async def invoice(invoice_id: str) -> None:
        raise exc

    install_fallback_handlers(app)
    return app


def service_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records the app wrote; the test's own client logs the URL it requested."""
    return [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]


def logged_text(record: logging.LogRecord) -> str:
    """Everything a handler could write for a record."""
    parts = [str(record.msg), repr(record.args), record.getMessage(), str(record.exc_text)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


async def test_an_unhandled_error_is_a_500_problem_and_logs_no_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app = failing_app(RuntimeError(f"INSERT failed: parameters ('{MARK}',)"))
    async with client(app) as http:  # would raise here if the exception reached the server
        response = await http.get(f"/invoices/{MARK}", params={"q": MARK})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = Problem.model_validate(response.json())
    assert body.type == "https://quittance.dev/problems/internal"
    assert MARK not in body.detail
    assert all(MARK not in logged_text(r) for r in service_records(caplog))
    assert service_records(caplog), "the failure was logged"
    errors = [r for r in caplog.records if r.name == "shared.http"]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert errors[0].getMessage() == (
        "unhandled error during GET /invoices/{invoice_id}: RuntimeError"
    )
    assert errors[0].exc_info is None


async def test_an_error_after_the_response_started_is_logged_without_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError(MARK)

    app = FastAPI()
    app.mount("/stream", inner)
    install_fallback_handlers(app)
    sent, _ = await run_asgi(app, {**http_scope(), "method": "GET", "path": "/stream/"}, [b""])
    assert [m.get("status") for m in sent] == [200], "no second response start"
    assert any("ValueError" in r.getMessage() for r in caplog.records)
    assert all(MARK not in logged_text(r) for r in service_records(caplog))


def wrapped_by_sqlalchemy(driver_error: Exception) -> sqlalchemy.exc.DBAPIError:
    """How SQLAlchemy's asyncpg dialect reports a driver error: a DB-API error caused by it."""
    try:
        try:
            raise driver_error
        except Exception as error:
            raise Exception("adapted") from error  # stands for the dialect's DB-API class
    except Exception as adapted:
        return sqlalchemy.exc.DBAPIError("SELECT 1", {"email": MARK}, adapted)


OUTAGES: dict[str, Callable[[], Exception]] = {
    "refused": lambda: ConnectionRefusedError(111, "Connection refused"),
    "os-error": lambda: OSError(113, "No route to host"),
    "timeout": lambda: TimeoutError(),  # asyncio.TimeoutError since 3.11
    "cannot-connect-now": lambda: asyncpg.exceptions.CannotConnectNowError("starting up"),
    "connection-gone": lambda: asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
    "operational": lambda: sqlalchemy.exc.OperationalError("SELECT 1", {"e": MARK}, Exception()),
    "interface": lambda: sqlalchemy.exc.InterfaceError("SELECT 1", {"e": MARK}, Exception()),
    "invalidated": lambda: sqlalchemy.exc.DBAPIError(
        "SELECT 1", {"e": MARK}, Exception(), connection_invalidated=True
    ),
    "pool-timeout": lambda: sqlalchemy.exc.TimeoutError("QueuePool limit reached"),
    "wrapped-driver": lambda: wrapped_by_sqlalchemy(
        asyncpg.exceptions.ConnectionDoesNotExistError("closed")
    ),
    # asyncpg's answer when PostgreSQL is killed in the middle of a statement (found by chaos)
    "driver-lost-protocol": lambda: wrapped_by_sqlalchemy(
        asyncpg.exceptions.InternalClientError(
            "waiter is not done while handling critical protocol error"
        )
    ),
}


@pytest.mark.parametrize("make", OUTAGES.values(), ids=OUTAGES.keys())
async def test_an_unreachable_database_is_a_503_with_retry_after(
    make: Callable[[], Exception], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client(failing_app(make())) as http:
        response = await http.get("/invoices/1")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://quittance.dev/problems/unavailable"
    assert all(MARK not in logged_text(r) for r in service_records(caplog))
    assert any(r.levelno == logging.WARNING for r in caplog.records)


async def test_a_database_error_that_is_no_outage_is_a_500() -> None:
    error = wrapped_by_sqlalchemy(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    async with client(failing_app(error)) as http:
        response = await http.get("/invoices/1")
    assert response.status_code == 500
    assert response.json()["type"].endswith("/internal")


async def test_a_service_handler_for_its_own_error_still_wins() -> None:
    class PaidError(Exception):
        pass

    app = failing_app(PaidError())

    @app.exception_handler(PaidError)
    async def on_paid(request: Request, exc: PaidError) -> Response:
        return problem_response(
            status=409, slug="conflict", title="Conflict", detail="paid", instance="/"
        )

    async with client(app) as http:
        response = await http.get("/invoices/1")
    assert response.status_code == 409


class Customer(BaseModel):
    name: str
    age: int
    lines: list[dict[str, int]] = []

    @field_validator("name")
    @classmethod
    def known(cls, value: str) -> str:
        raise ValueError(f"unknown customer {value}")  # a careless message quoting the input


def validating_app() -> FastAPI:
    app = FastAPI()

    @app.post("/customers")
    async def create(customer: Customer, limit: int = 10) -> dict[str, str]:
        return {}

    install_fallback_handlers(app)
    return app


async def test_a_validation_error_is_a_422_problem_naming_fields_without_values() -> None:
    async with client(validating_app()) as http:
        response = await http.post(
            "/customers",
            params={"limit": MARK},
            json={"name": MARK, "age": MARK, "lines": [{"amount": MARK}]},
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert MARK not in response.text, "neither input nor ctx nor a message quoting the input"
    body = response.json()
    assert body["type"] == "https://quittance.dev/problems/validation"
    errors = {e["field"]: e for e in body["errors"]}
    assert set(errors) == {"limit", "name", "age", "lines.0.amount"}
    assert errors["age"]["code"] == "int_parsing"
    assert errors["age"]["message"].startswith("Input should be a valid integer")
    assert errors["name"]["code"] == "value_error"
    assert set(errors["age"]) == {"field", "message", "code"}
    assert body["detail"] == "invalid field(s): age, limit, lines.0.amount, name"


async def test_malformed_json_is_a_422_problem() -> None:
    async with client(validating_app()) as http:
        response = await http.post(
            "/customers",
            content=b'{"name": "' + MARK.encode(),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "json_invalid"
    assert MARK not in response.text


# --- card numbers anywhere in a request (NO-PAN) --------------------------------------------

CARD = "4111 1111 1111 1111"


def card_refusing_app(reached: list[Any]) -> FastAPI:
    """An app whose route takes anything, untyped: only the middleware can refuse."""
    app = FastAPI()

    @app.post("/notes")
    async def create(request: Request) -> dict[str, str]:
        reached.append(await request.body())
        return {}

    @app.get("/notes/{note_id}")
    async def read(note_id: str) -> dict[str, str]:
        reached.append(note_id)
        return {}

    harden_api(app, max_body_bytes=1 << 20)
    return app


def _refused_at(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert [e["code"] for e in body["errors"]] == ["card_number"]
    for form in (CARD, CARD.replace(" ", ""), "1111 1111"):
        assert form not in response.text, "the refusal never echoes the number"
    field: str = body["errors"][0]["field"]
    return field


@pytest.mark.clause("NO-PAN")
@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"json": {"lines": [{"note": "ok"}, {"note": f"paid {CARD}"}]}}, "lines.1.note"),
        ({"json": {"unknown": {"deep": [CARD.replace(" ", ".")]}}}, "unknown.deep.0"),
        ({"json": {CARD: "a card number as a key"}}, "<key>"),
        ({"json": {"amount": 4111111111111111}}, "amount"),
        ({"json": f"  {CARD}  "}, "body"),
        # A JSON escape cannot hide a digit: \u0034 is "4".
        (
            {
                "content": b'{"n": "\\u0034111 1111 1111 1111"}',
                "headers": {"content-type": "application/json"},
            },
            "n",
        ),
        ({"content": f"note={CARD}".encode(), "headers": {"content-type": "text/plain"}}, "body"),
        ({"json": {}, "params": {"q": CARD}}, "q"),
        ({"json": {}, "params": {CARD: "x"}}, "<name>"),
        ({"json": {}, "headers": {"X-Note": CARD.replace(" ", "\t")}}, "x-note"),
        # Clients send headers in UTF-8: no-break spaces and fullwidth digits must not hide it.
        ({"json": {}, "headers": {"X-Note": CARD.replace(" ", "\u00a0").encode()}}, "x-note"),
        (
            {"json": {}, "headers": {"X-Note": "\uff14\uff11\uff11\uff11 1111 1111 1111".encode()}},
            "x-note",
        ),
    ],
)
async def test_no_pan_a_card_number_anywhere_in_a_request_is_refused_before_the_route(
    request_kwargs: dict[str, Any], field: str
) -> None:
    reached: list[Any] = []
    async with client(card_refusing_app(reached)) as http:
        response = await http.post("/notes", **request_kwargs)
    assert _refused_at(response) == field
    assert reached == []


@pytest.mark.clause("NO-PAN")
async def test_no_pan_a_card_number_in_the_path_is_refused_and_the_path_not_echoed() -> None:
    reached: list[Any] = []
    async with client(card_refusing_app(reached)) as http:
        response = await http.get("/notes/4111-1111-1111-1111")
    assert _refused_at(response) == "path"
    assert response.json()["instance"] == "about:blank"
    assert reached == []


@pytest.mark.clause("NO-PAN")
async def test_no_pan_ordinary_requests_pass_with_their_body_intact() -> None:
    reached: list[Any] = []
    body = b'{"note": "INV-000042 of 2024-01-31, EUR 1,234.50, call +49 151 23456789"}'
    trace = {"traceparent": "00-12345678901234567890123456789012-1234567890123456-01"}
    async with client(card_refusing_app(reached)) as http:
        posted = await http.post(
            "/notes", content=body, headers={"content-type": "application/json"} | trace
        )
        read = await http.get("/notes/123e4567-e89b-12d3-a456-426614174000")
    assert (posted.status_code, read.status_code) == (200, 200)
    assert reached == [body, "123e4567-e89b-12d3-a456-426614174000"]


@pytest.mark.clause("NO-PAN")
async def test_no_pan_the_refusal_sits_inside_the_body_limit_and_the_security_headers() -> None:
    reached: list[Any] = []
    async with client(card_refusing_app(reached)) as http:
        refused = await http.post("/notes", json={"n": CARD})
        oversize = await http.post("/notes", content=b"4" * (2 << 20))
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert oversize.status_code == 413
    app = card_refusing_app(reached)
    outermost_first = [m.cls for m in app.user_middleware]
    assert outermost_first.index(SecurityHeadersMiddleware) < outermost_first.index(
        BodyLimitMiddleware
    )
    assert outermost_first.index(BodyLimitMiddleware) < outermost_first.index(
        CardNumberRefusalMiddleware
    )
    assert reached == []


async def test_http_errors_are_problems_that_keep_their_headers() -> None:
    app = FastAPI()

    @app.get("/items")
    async def items() -> None:
        raise HTTPException(401, detail="Not authenticated", headers={"WWW-Authenticate": "Bearer"})

    install_fallback_handlers(app)
    async with client(app) as http:
        unauthenticated = await http.get("/items")
        missing = await http.get("/nowhere")
        wrong_method = await http.delete("/items")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert unauthenticated.json()["type"] == "https://quittance.dev/problems/http-401"
    assert unauthenticated.json()["detail"] == "Not authenticated"
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"].endswith("/http-404")
    assert missing.json()["instance"] == "/nowhere"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET"


async def test_a_405_allows_the_methods_of_every_route_at_the_path() -> None:
    app = FastAPI()

    @app.get("/items")
    async def list_items() -> None: ...

    @app.post("/items")
    async def add_item() -> None: ...

    install_fallback_handlers(app)
    async with client(app) as http:
        response = await http.request("OPTIONS", "/items")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


# --- database engine ---------------------------------------------------------------------------


def test_the_engine_hides_sql_parameters_from_errors_and_logs() -> None:
    engine = create_engine("postgresql+asyncpg://user:pw@127.0.0.1:1/none")  # does not connect
    assert engine.sync_engine.hide_parameters is True


# --- offline docs ------------------------------------------------------------------------------


@pytest.fixture
def swagger_files(tmp_path: Path) -> Path:
    (tmp_path / "swagger-ui-bundle.js").write_text("window.SwaggerUIBundle = function () {};")
    (tmp_path / "swagger-ui.css").write_text(".swagger-ui {}")
    (tmp_path / "favicon-32x32.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return tmp_path


async def test_docs_are_served_from_local_files_only(swagger_files: Path) -> None:
    app = FastAPI(title="Quittance test", docs_url=None, redoc_url=None)
    mount_offline_docs(app, static_dir=swagger_files)
    app.add_middleware(SecurityHeadersMiddleware)
    async with client(app) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == DOCS_CSP
        html = page.text
        assert "https://" not in html
        assert "http://" not in html
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls
        assert all(u.startswith("/docs/static/") for u in urls)
        assert "/docs/static/swagger-ui-bundle.js" in urls
        assert "/docs/static/swagger-ui.css" in urls
        assert "/docs/static/favicon-32x32.png" in urls
        # The docs policy allows no inline script: every script must come from a file.
        assert len(re.findall(r"<script\b", html)) == len(re.findall(r"<script src=", html))
        fetched = {u: await http.get(u) for u in urls}
        schema = await http.get("/openapi.json")
    assert all(r.status_code == 200 for r in fetched.values())
    assert fetched["/docs/static/swagger-ui.css"].text == ".swagger-ui {}"
    init = next(r for u, r in fetched.items() if u.endswith("swagger-ui-init.js"))
    assert init.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle({" in init.text
    assert "url: '/openapi.json'" in init.text
    assert "/docs" not in schema.json()["paths"], "the docs routes stay out of the API schema"


def test_docs_are_refused_on_an_app_that_serves_cdn_docs(swagger_files: Path) -> None:
    with pytest.raises(ValueError, match="docs_url=None"):
        mount_offline_docs(FastAPI(), static_dir=swagger_files)


def test_docs_need_the_swagger_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"swagger-ui-bundle\.js"):
        mount_offline_docs(FastAPI(docs_url=None, redoc_url=None), static_dir=tmp_path)
