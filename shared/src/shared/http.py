"""HTTP hardening every service's API shares: problem details, body limit, security headers,
error handlers that log no values, and Swagger UI served without a CDN.

`harden_api(app, max_body_bytes=...)` installs the handlers and middlewares in the right order.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import describe
from shared.input_types import CARD_NUMBER_MESSAGE, contains_card_number, find_card_number_path
from shared.kafka import is_infrastructure_outage
from shared.telemetry import route_template

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://quittance.dev/problems/"

API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)
DOCS_STATIC = "/docs/static"
RETRY_AFTER_S = 5


class FieldError(BaseModel):
    """One invalid field of a request: where, why, and the machine-readable code."""

    field: str
    message: str
    code: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem-details body (media type application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = None


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem-details response whose type is `https://quittance.dev/problems/<slug>`."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_DESCRIPTIONS: dict[int, str] = {
    400: "The request body cannot be read (not UTF-8, not the declared media type)",
    401: "No valid credentials were presented",
    403: "The credentials do not allow this",
    404: "Nothing exists here, or it is not visible to the caller",
    405: "The method is not allowed on this resource",
    409: "The request conflicts with the resource's current state",
    413: "The request body is larger than the service accepts",
    415: "The request body's media type is not accepted",
    422: "A field of the request is not valid; `errors` names each one",
    429: "Too many requests; retry after the time in Retry-After",
    500: "The service failed; nothing about the request is echoed",
    503: "A server the service depends on is unavailable; retry after Retry-After",
}


def _inlined(schema: Any, definitions: Mapping[str, Any]) -> Any:
    """The schema with its `$defs` references replaced by the definitions themselves."""
    if isinstance(schema, dict):
        reference = schema.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            return _inlined(definitions[reference.removeprefix("#/$defs/")], definitions)
        return {k: _inlined(v, definitions) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(item, definitions) for item in schema]
    return schema


def _problem_schema() -> dict[str, Any]:
    # Inlined: a `model=` entry would document the schema under application/json, and a
    # "#/$defs/..." reference inside an OpenAPI document points at the document's root.
    schema = Problem.model_json_schema()
    inlined: dict[str, Any] = _inlined(schema, schema.get("$defs", {}))
    return inlined


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` entries documenting these statuses as application/problem+json."""
    schema = _problem_schema()
    return {
        status: {
            "description": _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


def links_by_id(status: int, parameter: str, *operation_ids: str) -> dict[int | str, Any]:
    """A `responses=` entry linking the created resource's `id` to the operations that take it.

    OpenAPI links tell clients, and the fuzzer's stateful phase, which call follows which.
    """
    links = {
        operation_id: {
            "operationId": operation_id,
            "parameters": {parameter: "$response.body#/id"},
        }
        for operation_id in operation_ids
    }
    return {status: {"links": links}}


def operation_id_from_name(route: Any) -> str:
    """The route function's name as its OpenAPI operationId (`get_invoice`), for links."""
    return str(route.name)


def _instance(scope: Scope) -> str:
    return Request(scope).url.path


class _BodyTooLarge(StarletteHTTPException):
    """Raised into the app when the body passes the limit; an HTTP error, so no layer logs it."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=f"The request body exceeds the limit of {max_bytes} bytes.")


class BodyLimitMiddleware:
    """Answers 413 to a request body over `max_bytes`, declared or streamed, without buffering."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self, scope: Scope) -> Response:
        # The unread rest of the body cannot be taken for the next request: close the connection.
        return problem_response(
            status=413,
            slug="payload-too-large",
            title="Payload too large",
            detail=f"The request body exceeds the limit of {self.max_bytes} bytes.",
            instance=_instance(scope),
            headers={"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a declared oversize body at once; count a streamed one as the app reads it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refusal(scope)(scope, receive, send)
            return

        received = 0
        started = answered = False

        async def receive_limited() -> Message:
            nonlocal received, answered
            if received > self.max_bytes:
                raise _BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started:
                        await self._refusal(scope)(scope, receive, send)
                        answered = True
                    # The app never sees a body cut short as if it were whole.
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def send_unless_answered(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out; what the app says now is about a body it never got
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_limited, send_unless_answered)
        except _BodyTooLarge:
            if not answered:
                raise


# Headers that carry machine-made identifiers, never typed text: trace context holds random hex,
# whose digit runs would pass for a card number about once in ten thousand requests.
# Machine-made values whose hex digits can form a Luhn-valid run: a trace id, a signature.
UNSCANNED_HEADERS = frozenset(
    {
        "traceparent",
        "tracestate",
        "baggage",
        "content-length",
        "sandbox-signature",
        "stripe-signature",
    }
)


class CardNumberRefusalMiddleware:
    """Refuses (422) any request holding a card number in its path, query, headers or body.

    NO-PAN by construction: the input types refuse a card number field by field; this catches
    what no type sees (object keys, unknown fields, query strings, headers, a route that forgot
    its types), before any route, log or database does. The problem names where, never what:
    a body's field by its path ("lines.2.description"), a query parameter or header by its name.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Scan the request, its body buffered, then replay it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = self._field_outside_body(scope)
        body = b""
        if field is None and _has_body(scope):
            body = await read_body(receive)
            field = _card_number_field_in_body(scope, body)
        if field is not None:
            await _card_number_refusal(scope, field)(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive) if _has_body(scope) else receive, send)

    @staticmethod
    def _field_outside_body(scope: Scope) -> str | None:
        if contains_card_number(unquote(scope.get("path", ""))):
            return "path"
        query: str = scope.get("query_string", b"").decode("latin-1")
        if query:
            parameters = parse_qsl(query, keep_blank_values=True)
            for name, value in parameters:
                if contains_card_number(name):
                    return "<name>"
                if contains_card_number(value):
                    return str(name)
        for raw_name, raw_value in scope.get("headers", ()):
            header = str(raw_name.decode("latin-1")).lower()
            if header in UNSCANNED_HEADERS:
                continue
            # Clients send UTF-8 though HTTP says Latin-1: a no-break space or a fullwidth digit
            # read as Latin-1 turns into letters that would hide the number.
            text = raw_value.decode("utf-8", errors="replace")
            if contains_card_number(text) or contains_card_number(raw_value.decode("latin-1")):
                return header
        return None


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the body limit outside has already bounded it)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the app a body already read, then the client's own."""
    replayed = False

    async def receive_replayed() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_replayed


def _card_number_field_in_body(scope: Scope, body: bytes) -> str | None:
    text = body.decode("utf-8", errors="replace")
    if "json" in Headers(scope=scope).get("content-type", ""):
        try:
            document = json.loads(text, parse_float=Decimal)
        except ValueError:
            pass  # the route answers malformed JSON; its raw text is still scanned below
        else:
            path = find_card_number_path(document)
            return None if path is None else path or "body"
    return "body" if contains_card_number(text) else None


def _card_number_refusal(scope: Scope, field: str) -> Response:
    return problem_response(
        status=422,
        slug="validation",
        title="The request is not valid",
        detail=f"invalid field(s): {field}",
        instance=_instance(scope) if field != "path" else "about:blank",
        errors=[{"field": field, "message": CARD_NUMBER_MESSAGE, "code": "card_number"}],
    )


class SecurityHeadersMiddleware:
    """Adds the security headers to every response, errors included, and drops `Server`.

    `Cache-Control: no-store` unless the response set its own: answers carry account data and,
    once, API keys. Paths under `docs_paths` get `docs_csp`, which lets the locally served
    Swagger UI run.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        csp: str = API_CSP,
        docs_csp: str = DOCS_CSP,
        docs_paths: Sequence[str] = ("/docs", "/redoc"),
    ) -> None:
        self.app = app
        self.csp = csp
        self.docs_csp = docs_csp
        self.docs_paths = tuple(p.rstrip("/") for p in docs_paths)

    def _csp_for(self, scope: Scope) -> str:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        under_docs = any(path == p or path.startswith(p + "/") for p in self.docs_paths)
        return self.docs_csp if under_docs else self.csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the headers of the response's start message."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fixed = {
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "content-security-policy": self._csp_for(scope),
            "x-frame-options": "DENY",
            "cross-origin-resource-policy": "same-origin",
        }

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                del headers["server"]  # names the software to whoever probes for its bugs
                for name, value in fixed.items():
                    headers[name] = value
                headers.setdefault("cache-control", "no-store")
                message = {**message, "headers": headers.raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_outage(exc: BaseException) -> bool:
    """Whether the error says the database (or another server) is out of reach."""
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    if isinstance(exc, PoolTimeoutError):
        return True  # no pooled connection came free: the database is slow or gone
    return is_infrastructure_outage(exc)


class UnhandledErrorMiddleware:
    """Answers what no exception handler did: 503 for an outage, else 500; logs no values.

    It sits just outside Starlette's ExceptionMiddleware, so the exception stops here: it
    never reaches ServerErrorMiddleware, which re-raises to the server (uvicorn would log the
    traceback, whose messages may quote SQL parameters), nor FastAPI's exception telemetry.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; turn an escaping exception into a problem response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            response = _unhandled(scope, exc)
            # Once the response started, the server closes the connection on an incomplete one.
            if not started:
                await response(scope, receive, send)


def _unhandled(scope: Scope, exc: Exception) -> Response:
    method, route = scope.get("method", ""), route_template(scope) or "(no route)"
    if _is_outage(exc):
        log.warning("server unavailable during %s %s: %s", method, route, describe(exc))
        return problem_response(
            status=503,
            slug="unavailable",
            title="Service unavailable",
            detail="A server this service depends on is unavailable; retry later.",
            instance=_instance(scope),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    # No exc_info: a traceback's messages may quote the personal data the request carried.
    log.error("unhandled error during %s %s: %s", method, route, describe(exc))
    return problem_response(
        status=500,
        slug="internal",
        title="Internal error",
        detail="The service failed to handle the request.",
        instance=_instance(scope),
    )


def _field(location: Sequence[Any]) -> str:
    parts = [str(p) for p in location]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _message(error: Mapping[str, Any]) -> str:
    """pydantic's message, unless it quotes the input (a custom validator's message may)."""
    message = str(error.get("msg", ""))
    value = error.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= 3 and text in message:
            return "The value is not valid."
    return message


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Only location, message and type: pydantic's `input` and `ctx` carry what was sent.
    errors = [
        {"field": _field(e.get("loc", ())), "message": _message(e), "code": e.get("type")}
        for e in exc.errors()
    ]
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem_response(
        status=422,
        slug="validation",
        title="The request is not valid",
        detail=f"invalid field(s): {fields}",
        instance=request.url.path,
        errors=errors,
    )


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = str(exc.detail)
    headers = dict(exc.headers or {})  # WWW-Authenticate on 401
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        status=exc.status_code,
        slug=f"http-{exc.status_code}",
        title=title,
        detail=str(exc.detail),
        instance=request.url.path,
        headers=headers,
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_fallback_handlers(app: FastAPI) -> None:
    """Answer validation and HTTP errors, outages (503) and anything unhandled (500) as problems.

    Install it before adding the middlewares that should wrap its answers (body limit, security
    headers); `harden_api` does so. A service's own handlers for its domain errors still win.
    """
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(UnhandledErrorMiddleware)


def harden_api(app: FastAPI, *, max_body_bytes: int) -> None:
    """Fallback handlers inside the card number refusal, the body limit, the security headers."""
    install_fallback_handlers(app)
    app.add_middleware(CardNumberRefusalMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)


_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_SCRIPT_WITHOUT_SRC = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>")
_FAVICONS = ("favicon-32x32.png", "favicon.png")
_SWAGGER_ASSETS_PACKAGE = "fastapi_offline"


def _swagger_ui_assets() -> Path:
    """The Swagger UI files shipped by the fastapi-offline package."""
    spec = importlib.util.find_spec(_SWAGGER_ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("install fastapi-offline, or pass static_dir, to serve /docs offline")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _external_scripts(html: str, init_url: str) -> tuple[str, str]:
    """The page with its inline scripts moved to `init_url`, and their text."""
    scripts: list[str] = _SCRIPT.findall(html)
    first = True

    def replace(_: re.Match[str]) -> str:
        nonlocal first
        tag = f'<script src="{init_url}"></script>' if first else ""
        first = False
        return tag

    page = _SCRIPT.sub(replace, html)
    if _SCRIPT_WITHOUT_SRC.search(page):
        raise RuntimeError("the Swagger UI page has an inline script that DOCS_CSP would block")
    return page, "\n".join(scripts)


def mount_offline_docs(app: FastAPI, *, static_dir: Path | None = None) -> None:
    """Serve Swagger UI at /docs from `static_dir` (default: fastapi-offline's files), no CDN.

    Build the app with `docs_url=None, redoc_url=None`: FastAPI's own pages load from a CDN.
    The directory holds `swagger-ui-bundle.js`, `swagger-ui.css` and a favicon; the page's
    start-up script is served from /docs/static too, so DOCS_CSP needs no 'unsafe-inline'.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("build the app with docs_url=None, redoc_url=None to serve docs offline")
    if app.openapi_url is None:
        raise ValueError("the app publishes no OpenAPI document for /docs to show")
    directory = static_dir or _swagger_ui_assets()
    missing = [
        n for n in ("swagger-ui-bundle.js", "swagger-ui.css") if not (directory / n).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"Swagger UI files missing from {directory}: {', '.join(missing)}")
    favicon = next((n for n in _FAVICONS if (directory / n).is_file()), None)
    openapi_url = app.openapi_url
    init_path = f"{DOCS_STATIC}/swagger-ui-init.js"

    def page(request: Request) -> tuple[str, str]:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        html = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/{favicon}" if favicon else "data:,",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        return _external_scripts(bytes(html.body).decode(), root + init_path)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return HTMLResponse(page(request)[0])

    # Registered before the mount, which would otherwise answer 404 for this path.
    @app.get(init_path, include_in_schema=False)
    async def swagger_ui_init(request: Request) -> Response:
        return Response(page(request)[1], media_type="text/javascript")

    app.mount(DOCS_STATIC, StaticFiles(directory=directory), name="docs-static")
