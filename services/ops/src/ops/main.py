"""The ops dashboard app: `create_app(settings)`; the lifespan starts the observer."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import html
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from importlib.resources import files
from typing import Annotated, Any

import httpx
from cryptography.fernet import Fernet, InvalidToken
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from ops.services import Observer
from ops.settings import OpsSettings
from shared.http import (
    BodyLimitMiddleware,
    SecurityHeadersMiddleware,
    install_fallback_handlers,
    problem_response,
)
from shared.input_types import Reference
from shared.serving import serve, serve_arguments
from shared.telemetry import configure_logging

SESSION_COOKIE = "quittance_ops_session"
# The page runs only its own script and style, talks only to its own origin, is never framed.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@functools.cache
def _static(name: str) -> str:
    # Read once per process: the page's files do not change while it runs.
    return files("ops").joinpath("static", name).read_text(encoding="utf-8")


class Redrive(BaseModel):
    """An operator's order to send one dead letter back to its topic."""

    model_config = ConfigDict(extra="forbid")

    service: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    id: Annotated[str, StringConstraints(min_length=1, max_length=400, pattern=r"^[!-~]+$")]
    reason: Reference


# Billing's session cookie, part of its public API: staff sign in to billing, and the dashboard
# keeps their billing session to check, now and then, that they are still operations staff.
BILLING_SESSION_COOKIE = "__Host-quittance_session"


@dataclass(frozen=True)
class Operator:
    """A signed-in member of operations staff, by name (redrives are recorded under it)."""

    staff_id: str
    name: str
    token: str = field(repr=False)  # their billing session's cookie value
    csrf: str = field(repr=False)  # for signing out of billing


class SignInRefused(Exception):
    """Billing did not sign the person in as operations staff: the page's message and status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class StaffSignIn:
    """Operations staff sign in with their own staff account (billing's `POST /staff/sessions`:
    its password check, throttle and removal, told the person's address); an encrypted cookie
    keeps them in for a shift (it carries their billing session, which nobody may read out of
    it), and that session is checked every `staff_check_interval_s`, so a removed staff member
    or a lost role is out within that time. While billing cannot answer, an operator it
    confirmed within `staff_check_grace_s` may still watch, but changes nothing. Wrong
    passwords are counted per client address, so one guesser cannot lock everybody out."""

    def __init__(
        self, settings: OpsSettings, client: httpx.AsyncClient, clock: Any = time.monotonic
    ) -> None:
        self.settings = settings
        self.client = client  # its own; its cookie jar is cleared after every call
        self.billing = settings.services.get("billing", "").rstrip("/")
        key = hashlib.sha256(
            b"quittance-ops-session:" + settings.session_key.get_secret_value().encode()
        )
        self.cookies = Fernet(base64.urlsafe_b64encode(key.digest()))
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._confirmed: dict[str, float] = {}  # billing token digest: when billing last said yes

    def locked(self, address: str) -> bool:
        """Too many wrong passwords from this address in the last minute."""
        now = self.clock()
        for known in [a for a, f in self._failures.items() if not f or now - f[-1] > 60]:
            del self._failures[known]  # forget quiet addresses: the map stays small
        failures = self._failures.get(address, deque())
        while failures and now - failures[0] > 60:
            failures.popleft()
        return len(failures) >= self.settings.sign_in_failures_per_minute

    async def sign_in(self, email: str, password: str, address: str) -> Operator:
        """Sign in to billing as staff; only the operations roles may use the dashboard. The
        attempt counts against the address until billing says it was right, so parallel
        guesses cannot slip past the lock."""
        attempts = self._failures.setdefault(address, deque())
        attempt = self.clock()
        attempts.append(attempt)
        try:
            answer = await self.client.post(
                f"{self.billing}/staff/sessions",
                json={"email": email, "password": password},
                # Billing throttles per address too: it must see the person's, not ours.
                headers={"x-forwarded-for": address},
            )
        except httpx.HTTPError:
            attempts.remove(attempt)
            raise SignInRefused("Billing cannot be reached to check who you are.", 503) from None
        finally:
            self.client.cookies.clear()
        if answer.status_code == 401:
            raise SignInRefused("That email and password do not sign in a staff member.", 401)
        attempts.remove(attempt)
        if answer.status_code == 429:
            raise SignInRefused("Too many attempts: wait a few minutes and try again.", 429)
        if answer.status_code != 201:
            raise SignInRefused("Billing could not check who you are; try again shortly.", 503)
        operator = await self._operator_of(answer)
        if not set(answer.json().get("roles", [])) & set(self.settings.operations_roles):
            await self.sign_out(operator)
            raise SignInRefused("The dashboard is for operations staff.", 403)
        now = self.clock()
        if len(self._confirmed) > 1000:  # forget sessions long past: the map stays small
            shift = self.settings.session_hours * 3600
            self._confirmed = {d: at for d, at in self._confirmed.items() if now - at < shift}
        self._confirmed[_digest(operator.token)] = now
        return operator

    async def _operator_of(self, answer: httpx.Response) -> Operator:
        try:
            body = answer.json()
            return Operator(
                staff_id=str(body["staff_id"]),
                name=str(body["name"]),
                token=_cookie(answer),
                csrf=str(body["csrf_token"]),
            )
        except (ValueError, KeyError, TypeError):
            raise SignInRefused("Billing answered what this dashboard cannot read.", 502) from None

    def cookie(self, operator: Operator) -> str:
        """The dashboard's session cookie: the operator, encrypted and authenticated (AES and
        HMAC, Fernet), dated for its expiry."""
        payload = json.dumps([operator.staff_id, operator.name, operator.token, operator.csrf])
        return self.cookies.encrypt(payload.encode()).decode()

    async def operator(self, request: Request, *, to_change: bool = False) -> Operator | None:
        """The signed-in operator, if the cookie is genuine, not expired, and billing still
        knows them as operations staff (asked at most every `staff_check_interval_s`). While
        billing cannot answer, one it confirmed within `staff_check_grace_s` may still read
        (an outage must not blind operators), never change anything (`to_change`)."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            plain = self.cookies.decrypt(
                token.encode(), ttl=int(self.settings.session_hours * 3600)
            )
            staff_id, name, billing_token, csrf = json.loads(plain)
            operator = Operator(str(staff_id), str(name), str(billing_token), str(csrf))
        except (InvalidToken, ValueError, TypeError):
            return None
        digest = _digest(operator.token)
        confirmed = self._confirmed.get(digest)
        now = self.clock()
        if confirmed is not None and now - confirmed < self.settings.staff_check_interval_s:
            return operator
        try:
            answer = await self.client.get(
                f"{self.billing}/staff/session",
                headers={"cookie": f"{BILLING_SESSION_COOKIE}={operator.token}"},
            )
        except httpx.HTTPError:
            answer = None
        finally:
            self.client.cookies.clear()
        if answer is None or answer.status_code >= 500:
            grace = self.settings.staff_check_grace_s
            recent = confirmed is not None and now - confirmed < grace
            return operator if recent and not to_change else None
        if answer.status_code != 200 or not set(answer.json().get("roles", [])) & set(
            self.settings.operations_roles
        ):
            self._confirmed.pop(digest, None)
            return None
        self._confirmed[digest] = now
        return operator

    async def sign_out(self, operator: Operator) -> None:
        """End the operator's billing session too (best effort: it ends on its own anyway)."""
        self._confirmed.pop(_digest(operator.token), None)
        with contextlib.suppress(httpx.HTTPError):
            await self.client.delete(
                f"{self.billing}/session",
                headers={
                    "cookie": f"{BILLING_SESSION_COOKIE}={operator.token}",
                    "x-csrf-token": operator.csrf,
                },
            )
        self.client.cookies.clear()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _cookie(answer: httpx.Response) -> str:
    """The billing session cookie's value from the raw header (a Secure cookie over plain
    HTTP never reaches httpx's jar)."""
    for header in answer.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if BILLING_SESSION_COOKIE in jar:
            return jar[BILLING_SESSION_COOKIE].value
    raise KeyError(BILLING_SESSION_COOKIE)


def _unauthenticated(request: Request) -> JSONResponse:
    return problem_response(
        status=401,
        slug="unauthenticated",
        title="Not signed in",
        detail="Sign in to the dashboard first",
        instance=request.url.path,
    )


def sign_in_page(message: str = "") -> str:
    """The sign-in form, with a message when the last attempt failed."""
    notice = f'<p class="notice" role="alert">{html.escape(message)}</p>' if message else ""
    return _static("sign_in.html").replace("<!--notice-->", notice)


def create_app(
    settings: OpsSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the dashboard: staff sign-in, the page, its state as JSON, and /healthz."""
    settings = settings or OpsSettings()
    configure_logging("ops", settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            httpx.AsyncClient(timeout=settings.request_timeout_s, transport=transport) as client,
            # Its own client: a staff session's cookie must never ride on the observer's reads.
            httpx.AsyncClient(timeout=settings.request_timeout_s, transport=transport) as staff,
        ):
            observer = Observer(settings, client)
            app.state.observer = observer
            app.state.sign_in = StaffSignIn(settings, staff)
            polling = asyncio.create_task(observer.run())
            try:
                yield
            finally:
                polling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polling

    app = FastAPI(
        title="Quittance ops", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    install_fallback_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=4096)
    app.add_middleware(SecurityHeadersMiddleware, csp=DASHBOARD_CSP)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/sign-in", response_class=HTMLResponse)
    async def sign_in_form() -> HTMLResponse:
        return HTMLResponse(sign_in_page())

    @app.post("/sign-in")
    async def sign_in_submit(
        request: Request,
        email: Annotated[str, Form(max_length=320)],
        password: Annotated[str, Form(max_length=1024)],
    ) -> Response:
        sign_in: StaffSignIn = request.app.state.sign_in
        address = request.client.host if request.client else "unknown"
        if sign_in.locked(address):
            return HTMLResponse(
                sign_in_page("Too many wrong passwords: wait a minute and try again."),
                status_code=429,
                headers={"retry-after": "60"},
            )
        try:
            operator = await sign_in.sign_in(email, password, address)
        except SignInRefused as refused:
            return HTMLResponse(sign_in_page(str(refused)), status_code=refused.status)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sign_in.cookie(operator),
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            secure=settings.secure_cookie,
            samesite="strict",
        )
        return response

    @app.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        sign_in: StaffSignIn = request.app.state.sign_in
        operator = await sign_in.operator(request)
        if operator is not None:
            await sign_in.sign_out(operator)
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    async def dashboard(request: Request) -> Response:
        if await request.app.state.sign_in.operator(request) is None:
            return RedirectResponse("/sign-in", status_code=303)
        return HTMLResponse(_static("dashboard.html"))

    @app.get("/api/state")
    async def state(request: Request) -> Response:
        operator = await request.app.state.sign_in.operator(request)
        if operator is None:
            return _unauthenticated(request)
        observer: Observer = request.app.state.observer
        return JSONResponse({**await observer.state(), "operator": operator.name})

    @app.post("/api/dead-letters/redrive")
    async def redrive(request: Request) -> Response:
        """Send a dead letter back to its topic through its service, which records it in the
        account's trail under the operator's name: a freshly confirmed operator, JSON only
        (no form can send that type), behind the SameSite=Strict session."""
        operator = await request.app.state.sign_in.operator(request, to_change=True)
        if operator is None:
            return _unauthenticated(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # A form (even text/plain shaped as JSON) cannot send this type across sites.
            return problem_response(
                status=415,
                slug="unsupported-media-type",
                title="Unsupported media type",
                detail="send the order as application/json",
                instance="/api/dead-letters/redrive",
            )
        try:
            order = Redrive.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(), body=None) from None
        if order.service not in settings.services:
            return problem_response(
                status=422,
                slug="invalid-field",
                title="Invalid field",
                detail="no such service",
                instance="/api/dead-letters/redrive",
                errors=[{"field": "service", "message": "no such service"}],
            )
        observer: Observer = request.app.state.observer
        try:
            answer = await observer.redrive(
                order.service, order.id, order.reason, operator=(operator.name, operator.staff_id)
            )
        except httpx.HTTPError:
            return problem_response(
                status=503,
                slug="service-unavailable",
                title="Service unavailable",
                detail=f"{order.service} cannot be reached; nothing was sent back",
                instance="/api/dead-letters/redrive",
            )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type", "application/json"),
        )

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC_TYPES:
            return problem_response(
                status=404,
                slug="not-found",
                title="Not found",
                detail="No such file",
                instance=f"/static/{name}",
            )
        return Response(
            _static(name),
            media_type=STATIC_TYPES[name],
            headers={"cache-control": "no-cache"},
        )

    return app


def main() -> None:
    """`python -m ops.main serve`: the dashboard, HTTPS with HSTS when a certificate is set."""
    parser = argparse.ArgumentParser(prog="python -m ops.main")
    parser.add_argument("command", choices=["serve"])
    serve_arguments(parser, port=8004)
    args = parser.parse_args()
    serve("ops.main:create_app", OpsSettings().tls, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
