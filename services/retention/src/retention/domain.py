"""Retention's pure rules: saga states and purge certificates."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from shared.export_store import canonical_json


class SagaStatus(StrEnum):
    """Where a termination is; a finished saga is deleted, leaving only its certificate."""

    EXPORTING = "exporting"
    DELIVERING = "delivering"
    PURGING = "purging"
    HELD = "held"  # exported and delivered; a legal hold stands, so nothing is purged (LAW)


def account_reference(account_id: UUID, key: bytes) -> str:
    """A keyed hash of the account id: the certificate proves the purge without naming it."""
    return hmac.new(key, str(account_id).encode(), hashlib.sha256).hexdigest()


CERTIFICATE_FORMAT = "quittance-purge-certificate/1"


@dataclass(frozen=True)
class Purge:
    """One participant's purge, as it reported it."""

    rows: int
    at: str  # ISO 8601; "" when it was not recorded (a saga begun before it was)


def certificate_payload(
    *,
    certificate_id: UUID,
    saga_id: UUID,
    account_reference: str,
    bundle_sha256: str,
    manifest_sha256: str | None,
    purges: Mapping[str, Purge],
    destroyed_keys: list[str],
    terminated_at: datetime,
    delivered_at: datetime,
    completed_at: datetime,
    signing_key_id: str,
) -> bytes:
    """The certificate as signed: canonical JSON (keys sorted, no spaces: RFC 8785's form for
    these strings and integers). No personal data: the account is named by a keyed hash."""
    document = {
        "format": CERTIFICATE_FORMAT,
        "certificate_id": str(certificate_id),
        "saga_id": str(saga_id),
        "account_reference": account_reference,
        "exported": {"bundle_sha256": bundle_sha256, "manifest_sha256": manifest_sha256},
        "deleted": {
            service: {"rows": purge.rows, "completed_at": purge.at}
            for service, purge in sorted(purges.items())
        },
        "destroyed_keys": sorted(destroyed_keys),
        "terminated_at": terminated_at.isoformat(),
        "export_delivered_at": delivered_at.isoformat(),
        "completed_at": completed_at.isoformat(),
        "signing_key_id": signing_key_id,
    }
    return canonical_json(document).encode()
