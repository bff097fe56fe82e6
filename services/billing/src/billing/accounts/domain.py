"""Accounts' pure rules: their states and their users' roles."""

from __future__ import annotations

from enum import StrEnum


class AccountStatus(StrEnum):
    """Whether the account's contract runs."""

    ACTIVE = "active"
    TERMINATED = "terminated"


class Role(StrEnum):
    """What a user of an account may do (LEAST-ACCESS)."""

    OWNER = "owner"  # everything, alone: termination and handing the account over
    ADMIN = "admin"  # users, staff access grants, the account's details
    ACCOUNTANT = "accountant"  # customers, invoices
    READ_ONLY = "read_only"  # reads


class UserStatus(StrEnum):
    """Whether a user has accepted their invitation."""

    INVITED = "invited"
    ACTIVE = "active"


EVERY_ROLE = frozenset(Role)
BOOKKEEPERS = frozenset({Role.OWNER, Role.ADMIN, Role.ACCOUNTANT})
ADMINISTRATORS = frozenset({Role.OWNER, Role.ADMIN})
OWNER_ONLY = frozenset({Role.OWNER})


# The plans an account may have; what each keeps for how long is retention's schedule (its
# `/plans`), which a cross-service test holds to this list (PLAN-RETENTION).
PLANS = ("free", "standard", "enterprise")
# How long request metadata that names no account is kept (COLLECTED): staff sessions and
# failed sign-ins (Quittance's own security record), and failed sign-ins for addresses that are
# nobody's (as long as the shortest plan keeps an account's).
STAFF_REQUEST_METADATA_DAYS = 365
UNCLAIMED_REQUEST_METADATA_DAYS = 30
