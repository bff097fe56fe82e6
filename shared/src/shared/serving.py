"""How every HTTP service is served (TLS): HTTPS with TLS 1.2 or newer when a certificate is
set, and then HSTS on every response; never an access log (paths and queries can hold
personal data) and no server header.

`serve("billing.main:create_app", settings.tls, ...)` is every service's `serve` command: HTTPS
and HSTS come from the one setting, and no app has to remember the header.
"""

from __future__ import annotations

import argparse
import importlib
import os
import ssl
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import TlsSettings

HSTS = "max-age=63072000; includeSubDomains"


class StrictTransportSecurity:
    """Adds HSTS to every HTTP response (served over HTTPS only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; stamp the response's headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_hsts)


# What `serve` runs, for uvicorn's worker processes too (they import the factory by name).
_SERVED_APP = "QUITTANCE_SERVED_APP"
_SERVED_OVER_HTTPS = "QUITTANCE_SERVED_OVER_HTTPS"


def served_app() -> ASGIApp:
    """The app `serve` named, behind HSTS when it is served over HTTPS."""
    module_name, factory_name = os.environ[_SERVED_APP].split(":")
    app: ASGIApp = getattr(importlib.import_module(module_name), factory_name)()
    return StrictTransportSecurity(app) if os.environ.get(_SERVED_OVER_HTTPS) == "1" else app


WORKER_PING_TIMEOUT_S = 60


def serve(factory: str, tls: TlsSettings, *, host: str, port: int, workers: int = 1) -> None:
    """Run the app factory (`package.main:create_app`) under uvicorn: HTTPS with HSTS when a
    certificate is set, plain HTTP otherwise."""
    import uvicorn

    os.environ[_SERVED_APP] = factory
    os.environ[_SERVED_OVER_HTTPS] = "1" if tls.enabled else "0"
    uvicorn.run(
        "shared.serving:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=tls.certfile,
        ssl_keyfile=tls.keyfile,
        # Python 3.10+ server contexts refuse anything below TLS 1.2 (TLS clause); the suite
        # checks it against every running service (test_tls_everywhere).
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
        proxy_headers=True,
        access_log=False,  # it would log paths and query strings, which can hold personal data
        server_header=False,
        # With workers, uvicorn kills a worker that does not answer its ping in time (5 s by
        # default) and starts another: on a busy machine one still importing was killed over
        # and over (found by the two-instance chaos run).
        timeout_worker_healthcheck=WORKER_PING_TIMEOUT_S,
    )


def serve_arguments(parser: argparse.ArgumentParser, *, port: int) -> None:
    """The `serve` command's options, the same for every service."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--workers", type=int, default=1)


def service_cli(
    service: str, *, port: int, migrate: Callable[[], None], tls: Callable[[], TlsSettings]
) -> None:
    """`python -m <service>.main migrate|serve`: the entry point of a consumer service."""
    parser = argparse.ArgumentParser(prog=f"python -m {service}.main")
    parser.add_argument("command", choices=["migrate", "serve"])
    serve_arguments(parser, port=port)
    args = parser.parse_args()
    if args.command == "migrate":
        migrate()
        return
    serve(f"{service}.main:create_app", tls(), host=args.host, port=args.port, workers=args.workers)


def probe(port: int) -> bool:
    """The container's health probe: /healthz on the loopback, over HTTPS or plain HTTP.

    The certificate names the public host, not 127.0.0.1, and the probe never leaves the
    container, so it does not check the certificate.
    """
    import urllib.request

    for scheme, context in (("https", ssl._create_unverified_context()), ("http", None)):  # noqa: S323
        try:
            with urllib.request.urlopen(  # noqa: S310 - a fixed loopback address
                f"{scheme}://127.0.0.1:{port}/healthz", context=context, timeout=3
            ) as answer:
                return bool(answer.status == 200)
        except (OSError, ssl.SSLError):
            continue
    return False


if __name__ == "__main__":
    # `python -m shared.serving probe <port>`: the Dockerfiles' HEALTHCHECK.
    import sys

    raise SystemExit(0 if sys.argv[1:2] == ["probe"] and probe(int(sys.argv[2])) else 1)
