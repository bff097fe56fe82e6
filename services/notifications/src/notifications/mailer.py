"""Hands MIME messages to the SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiosmtplib
from opentelemetry import trace

from notifications.settings import SmtpSettings
from shared.telemetry import Telemetry


class SmtpMailer:
    """Sends a message and returns once the server accepted it."""

    def __init__(self, settings: SmtpSettings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.tracer = telemetry.tracer(__name__)

    @contextmanager
    def span(self) -> Iterator[None]:
        """A client span for a send made elsewhere (the streamed one, in a thread)."""
        with self.tracer.start_as_current_span("smtp send", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("server.address", self.settings.host)
            yield

    async def send(self, *, sender: str, recipient: str, mime: bytes) -> None:
        """Deliver raw MIME bytes to one recipient; raises if the server refuses."""
        with self.tracer.start_as_current_span("smtp send", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("server.address", self.settings.host)
            await aiosmtplib.send(
                mime,
                sender=sender,
                recipients=[recipient],
                hostname=self.settings.host,
                port=self.settings.port,
                username=self.settings.username,
                password=self.settings.password.get_secret_value()
                if self.settings.password
                else None,
                start_tls=self.settings.start_tls,
                use_tls=self.settings.use_tls,
                timeout=self.settings.timeout_s,
            )
