"""Hands MIME messages to the SMTP server.

TLS clause: production takes any SMTP server with STARTTLS or implicit TLS and authentication.
Both senders (this one, and `bulk_mail.send_file` for large messages) build their TLS context
with `tls_context`, which always verifies the server's certificate and host name, and both
refuse to authenticate over a plaintext connection.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aiosmtplib
from opentelemetry import trace

from notifications.settings import SmtpSettings
from shared.telemetry import Telemetry


class SmtpConfigurationError(Exception):
    """The SMTP settings would make an unsafe or impossible connection: nothing was sent."""


class PlaintextAuthenticationRefused(SmtpConfigurationError):
    """A username is set without STARTTLS or implicit TLS: the password would cross in clear."""


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """The TLS client context of every SMTP connection (TLS clause).

    The system's trust store, or only the PEM bundle of `settings.ca_file` (a private CA);
    certificate and host-name verification are always on: no setting turns them off.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def encrypted(settings: SmtpSettings) -> bool:
    """Whether the connection is TLS from the start or upgraded with STARTTLS."""
    return settings.start_tls or settings.use_tls


def credentials(settings: SmtpSettings) -> tuple[str, str] | None:
    """The user and password to log in with, or None; refuses them over plaintext (TLS clause).

    Raises `PlaintextAuthenticationRefused` before any connection is made.
    """
    if not settings.username:
        return None
    if not encrypted(settings):
        raise PlaintextAuthenticationRefused(
            f"SMTP authentication as {settings.username!r} needs an encrypted connection: "
            "set start_tls (STARTTLS) or use_tls (implicit TLS); not sending over plaintext"
        )
    password = settings.password.get_secret_value() if settings.password else ""
    return settings.username, password


class SmtpMailer:
    """Sends a message and returns once the server accepted it."""

    def __init__(self, settings: SmtpSettings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.tracer = telemetry.tracer(__name__)
        # Looked up once: aiosmtplib would ask the resolver again, in a thread, every send.
        self.local_hostname = settings.local_hostname or socket.getfqdn()

    @contextmanager
    def span(self) -> Iterator[None]:
        """A client span for a send made elsewhere (the streamed one, in a thread)."""
        with self.tracer.start_as_current_span("smtp send", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("server.address", self.settings.host)
            yield

    async def send(self, *, sender: str, recipient: str, mime: bytes) -> None:
        """Deliver raw MIME bytes to one recipient; raises if the server refuses.

        Raises `SmtpConfigurationError` (before connecting) for a login over plaintext.
        """
        login = credentials(self.settings)
        with self.tracer.start_as_current_span("smtp send", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("server.address", self.settings.host)
            await aiosmtplib.send(
                mime,
                sender=sender,
                recipients=[recipient],
                hostname=self.settings.host,
                port=self.settings.port,
                username=login[0] if login else None,
                password=login[1] if login else None,
                start_tls=self.settings.start_tls,
                use_tls=self.settings.use_tls,
                tls_context=tls_context(self.settings) if encrypted(self.settings) else None,
                timeout=self.settings.timeout_s,
                local_hostname=self.local_hostname,
            )
