"""The ops dashboard app: `create_app(settings)`; the lifespan starts the observer."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import html
import time
from collections import deque
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature, TimestampSigner
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


class SignIn:
    """Operations staff sign in with the dashboard's password; a signed cookie keeps them in."""

    def __init__(self, settings: OpsSettings, clock: Any = time.monotonic) -> None:
        self.settings = settings
        self.signer = TimestampSigner(
            settings.session_key.get_secret_value(), salt="quittance-ops-session"
        )
        self.clock = clock
        self._failures: deque[float] = deque()

    def locked(self) -> bool:
        """Too many wrong passwords in the last minute: refuse every attempt for a while."""
        now = self.clock()
        while self._failures and now - self._failures[0] > 60:
            self._failures.popleft()
        return len(self._failures) >= self.settings.sign_in_failures_per_minute

    def check(self, password: str) -> bool:
        """Whether the password is right (compared in constant time); wrong ones are counted."""
        expected = self.settings.sign_in_password.get_secret_value().encode()
        if hmac.compare_digest(password.encode(), expected):
            return True
        self._failures.append(self.clock())
        return False

    def session(self) -> str:
        """A new session token."""
        return self.signer.sign(b"operations").decode()

    def signed_in(self, request: Request) -> bool:
        """Whether the request carries a session that is genuine and not expired."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return False
        try:
            self.signer.unsign(token, max_age=int(self.settings.session_hours * 3600))
        except BadSignature:
            return False
        return True


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


def create_app(settings: OpsSettings | None = None) -> FastAPI:
    """Build the dashboard: sign-in, the page, its state as JSON, and /healthz."""
    settings = settings or OpsSettings()
    configure_logging("ops", settings.log_level)
    sign_in = SignIn(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=settings.request_timeout_s) as client:
            observer = Observer(settings, client)
            app.state.observer = observer
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
        request: Request, password: Annotated[str, Form(max_length=1024)]
    ) -> Response:
        if sign_in.locked():
            return HTMLResponse(
                sign_in_page("Too many wrong passwords: wait a minute and try again."),
                status_code=429,
                headers={"retry-after": "60"},
            )
        if not sign_in.check(password):
            return HTMLResponse(sign_in_page("That password is not right."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sign_in.session(),
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            secure=settings.secure_cookie,
            samesite="strict",
        )
        return response

    @app.post("/sign-out")
    async def sign_out() -> Response:
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse)
    async def dashboard(request: Request) -> Response:
        if not sign_in.signed_in(request):
            return RedirectResponse("/sign-in", status_code=303)
        return HTMLResponse(_static("dashboard.html"))

    @app.get("/api/state")
    async def state(request: Request) -> Response:
        if not sign_in.signed_in(request):
            return _unauthenticated(request)
        observer: Observer = request.app.state.observer
        return JSONResponse(await observer.state())

    @app.post("/api/dead-letters/redrive")
    async def redrive(request: Request) -> Response:
        """Send a dead letter back to its topic through its service (which records it in the
        account's trail). JSON only, behind the SameSite=Strict session: no form can post it."""
        if not sign_in.signed_in(request):
            return _unauthenticated(request)
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
            answer = await observer.redrive(order.service, order.id, order.reason)
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
    """`python -m ops.main`: serve the dashboard with uvicorn on port 8004."""
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8004, server_header=False)


if __name__ == "__main__":
    main()
