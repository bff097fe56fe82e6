"""Retention's pure rules: what each plan keeps for how long, saga states, purge certificates."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.data_map import SWEPT_BY_PLAN, RetentionCategory
from shared.export_store import canonical_json

DAY = timedelta(days=1)


class PlanTerms(BaseModel):
    """What a subscription plan keeps, and for how long (PLAN-RETENTION, COLLECTED)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grace_period: timedelta = Field(
        ge=timedelta(0),
        description="After termination: the account is read-only and its export downloadable "
        "for this long, then purged. Zero: the export is attached and the purge follows.",
    )
    kept: dict[RetentionCategory, timedelta] = Field(
        description="How long each category the plan's sweep deletes is kept, from the time "
        "its data map names (a session's last use, a log entry's writing)."
    )

    @model_validator(mode="after")
    def _states_every_swept_category(self) -> PlanTerms:
        """A plan says how long for every category the sweep deletes, and for no other."""
        if set(self.kept) != SWEPT_BY_PLAN:
            expected = ", ".join(sorted(SWEPT_BY_PLAN))
            raise ValueError(f"a plan states exactly these categories: {expected}")
        if any(period <= timedelta(0) for period in self.kept.values()):
            raise ValueError("a category is kept for a positive time")
        return self


PLANS: dict[str, PlanTerms] = {
    "free": PlanTerms(
        grace_period=timedelta(0),
        kept={
            RetentionCategory.REQUEST_METADATA: 30 * DAY,
            RetentionCategory.DELIVERY_LOG: 90 * DAY,
        },
    ),
    "standard": PlanTerms(
        grace_period=14 * DAY,
        kept={
            RetentionCategory.REQUEST_METADATA: 90 * DAY,
            RetentionCategory.DELIVERY_LOG: 365 * DAY,
        },
    ),
    "enterprise": PlanTerms(
        grace_period=30 * DAY,
        kept={
            RetentionCategory.REQUEST_METADATA: 180 * DAY,
            RetentionCategory.DELIVERY_LOG: 730 * DAY,
        },
    ),
}
# An account whose plan retention has not heard of is kept as the shortest plan says: data is
# never kept longer than a plan promises.
FALLBACK_PLAN = "free"
# The categories no plan's sweep deletes, and what keeps them instead (the same for every plan).
KEPT_REGARDLESS_OF_PLAN: dict[RetentionCategory, str] = {
    RetentionCategory.CONTRACT: "for the contract: exported, then purged at termination",
    RetentionCategory.CREDENTIALS: "while valid; purged at termination",
    RetentionCategory.ACCESS_TRAIL: (
        "for the contract, so the customer can see who read their data; purged at termination"
    ),
    RetentionCategory.TERMINATION: (
        "a termination's working data and its export bundle: until the purge, after the grace "
        "period"
    ),
    RetentionCategory.REPLAY: "one day (billing's idempotency sweep)",
    RetentionCategory.INBOX: (
        "handled events' ids, and published events in each outbox: the broker's retention "
        "window, then pruned by every service's housekeeping"
    ),
    RetentionCategory.CERTIFICATE_DELIVERY: "until the purge certificate is mailed",
}


def plan_terms(plans: dict[str, PlanTerms], plan: str | None) -> PlanTerms:
    """The terms of an account's plan; the fallback plan's for one not known."""
    return plans.get(plan or FALLBACK_PLAN) or plans[FALLBACK_PLAN]


def sweep_cutoffs(terms: PlanTerms, as_of: datetime) -> dict[str, datetime]:
    """Per swept category, the time before which an account's rows are past their plan's."""
    return {str(category): as_of - period for category, period in sorted(terms.kept.items())}


def sweep_slot(now: datetime, every: timedelta) -> datetime:
    """The scheduled sweep `now` falls in: every instance computes the same one."""
    epoch = datetime.fromtimestamp(0, tz=now.tzinfo)
    return epoch + ((now - epoch) // every) * every


class SagaStatus(StrEnum):
    """Where a termination is; a finished saga is deleted, leaving only its certificate."""

    EXPORTING = "exporting"
    DELIVERING = "delivering"
    PURGING = "purging"
    GRACE = "grace"  # exported; read-only and downloadable until the grace period ends
    HELD = "held"  # exported and delivered; a legal hold stands, so nothing is purged (LAW)


@dataclass(frozen=True)
class ExportLink:
    """What a signed export link opens: one saga's bundle, of one account, until a time."""

    saga_id: UUID
    account_id: UUID
    expires: int  # Unix seconds: the grace period's end

    def message(self) -> bytes:
        """The bytes signed (Ed25519, retention's signing key)."""
        return f"quittance-export-link/1|{self.saga_id}|{self.account_id}|{self.expires}".encode()

    def query(self, signature: bytes) -> str:
        """The link's query string."""
        encoded = base64.urlsafe_b64encode(signature).decode().rstrip("=")
        return (
            f"saga={self.saga_id}&account={self.account_id}&expires={self.expires}"
            f"&signature={encoded}"
        )


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
