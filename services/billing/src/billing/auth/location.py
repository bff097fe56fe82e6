"""Where a sign-in came from, roughly (COLLECTED): a city and country from a local GeoIP database,
never coordinates, and nothing at all when no database is configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import maxminddb


class Locator(Protocol):
    """Turns an IP address into an approximate place, or None."""

    def locate(self, address: str) -> str | None:
        """The city and country of the address, or None."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


class NoLocator:
    """No GeoIP database configured: no location is recorded."""

    def locate(self, address: str) -> str | None:
        """Nothing to say."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def _name(record: dict[str, Any], part: str) -> str | None:
    names = record.get(part, {}).get("names", {})
    name = names.get("en") if isinstance(names, dict) else None
    return name if isinstance(name, str) and name else None


class GeoIpLocator:
    """Looks addresses up in a MaxMind-format database (GeoLite2 or GeoIP2 City or Country),
    read from a local file: no address leaves the service."""

    def __init__(self, path: Path) -> None:
        self._reader = maxminddb.open_database(str(path), maxminddb.MODE_MMAP)

    def locate(self, address: str) -> str | None:
        """'City, Country', or 'Country', or None for a private or unknown address."""
        try:
            record = self._reader.get(address)
        except ValueError:  # not an IP address (a test client, a unix socket)
            return None
        if not isinstance(record, dict):
            return None
        parts = [_name(record, "city"), _name(record, "country")]
        return ", ".join(part for part in parts if part)[:200] or None

    def close(self) -> None:
        """Release the database."""
        self._reader.close()


def create_locator(database: Path | None) -> Locator:
    """A locator over the configured database, or one that records nothing."""
    return NoLocator() if database is None else GeoIpLocator(database)
