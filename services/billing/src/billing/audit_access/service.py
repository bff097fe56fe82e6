"""Short-lived tokens billing signs for audit: an account's owner or admin reads the account's
access report, security staff query the trail; audit checks them with billing's public key,
and billing never calls audit (STAFF-ACCESS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from billing.auth.models import Principal
from shared.signing import SigningKey
from shared.tokens import issue_token

AUDIENCE = "audit"


class AuditTokenService:
    """Issues the tokens audit accepts."""

    def __init__(self, *, key: SigningKey, ttl_s: int, audit_url: str) -> None:
        self.key = key
        self.ttl_s = ttl_s
        self.audit_url = audit_url.rstrip("/")

    def _issue(self, claims: dict[str, object]) -> tuple[str, datetime]:
        token = issue_token(self.key, claims, audience=AUDIENCE, ttl_s=self.ttl_s)
        return token, datetime.now(UTC) + timedelta(seconds=self.ttl_s)

    def for_account_report(self, principal: Principal) -> tuple[str, datetime]:
        """A token that opens the caller's own account's access report, and no other."""
        account_id = principal.require_user()
        assert principal.user_id is not None
        assert principal.role is not None
        return self._issue(
            {
                "sub": str(principal.user_id),
                "kind": "user",
                "account_id": str(account_id),
                "role": str(principal.role),
            }
        )

    def for_security_staff(self, principal: Principal) -> tuple[str, datetime]:
        """A token that lets a security staff member query the whole trail."""
        assert principal.staff_id is not None
        return self._issue(
            {
                "sub": str(principal.staff_id),
                "kind": "staff",
                "roles": sorted(str(role) for role in principal.staff_roles),
            }
        )
