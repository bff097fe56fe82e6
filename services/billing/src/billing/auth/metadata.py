"""What a sign-in records about the request (COLLECTED): for security and administration only."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request
from ua_parser import parse

UNKNOWN = "unknown"


@dataclass(frozen=True)
class RequestMetadata:
    """The address, the browser and operating system families, and the referring site.

    Kept minimal on purpose: the browser's and system's names and major versions, not the
    user-agent string; the referrer's origin, not its path or query.
    """

    address: str
    browser: str
    operating_system: str
    referrer: str | None

    @property
    def device(self) -> tuple[str, str]:
        """What tells one device from another for the new-device notice."""
        return self.browser, self.operating_system


def _named(family: str | None, major: str | None) -> str:
    if not family or family == "Other":
        return UNKNOWN
    return f"{family} {major}" if major else family


def _origin(referrer: str | None) -> str | None:
    if not referrer:
        return None
    parts = urlsplit(referrer)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.hostname}"[:200]


def request_metadata(request: Request) -> RequestMetadata:
    """The metadata of the request that signs in."""
    agent = request.headers.get("user-agent", "")[:1000]  # the parser's work stays bounded
    parsed = parse(agent)
    browser = parsed.user_agent
    system = parsed.os
    return RequestMetadata(
        address=request.client.host if request.client else UNKNOWN,
        browser=_named(browser.family, browser.major) if browser else UNKNOWN,
        operating_system=_named(system.family, system.major) if system else UNKNOWN,
        referrer=_origin(request.headers.get("referer")),
    )
