"""Retention's pure rules: saga states and purge certificates."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Any
from uuid import UUID

from shared.export_store import canonical_json


class SagaStatus(StrEnum):
    """Where a termination is; a finished saga is deleted, leaving only its certificate."""

    EXPORTING = "exporting"
    DELIVERING = "delivering"
    PURGING = "purging"


def account_reference(account_id: UUID, key: bytes) -> str:
    """A keyed hash of the account id: the certificate proves the purge without naming it."""
    return hmac.new(key, str(account_id).encode(), hashlib.sha256).hexdigest()


def certificate_digest(content: Mapping[str, Any]) -> str:
    """SHA-256 of the certificate's canonical JSON."""
    return hashlib.sha256(canonical_json(dict(content)).encode()).hexdigest()
