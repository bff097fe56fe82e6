"""Staff's pure rules: their roles, and which purposes each role may read for (PURPOSE)."""

from __future__ import annotations

from enum import StrEnum

from shared.contracts import AccessPurpose


class StaffRole(StrEnum):
    """What a Quittance employee does; each reads customer data only for its own purpose."""

    SUPPORT = "support"
    BILLING_OPERATIONS = "billing-operations"
    SECURITY = "security"  # also manages the staff: creates them, gives roles, removes them
    LEGAL = "legal"


EVERY_STAFF_ROLE = frozenset(StaffRole)
STAFF_ADMINISTRATORS = frozenset({StaffRole.SECURITY})
# The purpose a grant names must be the work of the staff member it names.
PURPOSE_OF_ROLE = {
    StaffRole.SUPPORT: AccessPurpose.SUPPORT,
    StaffRole.BILLING_OPERATIONS: AccessPurpose.BILLING_OPERATIONS,
    StaffRole.SECURITY: AccessPurpose.SECURITY,
    StaffRole.LEGAL: AccessPurpose.LEGAL,
}


def may_read_for(roles: frozenset[StaffRole], purpose: AccessPurpose) -> bool:
    """Whether a staff member with these roles may read customer data for the purpose."""
    return any(PURPOSE_OF_ROLE[role] == purpose for role in roles)
