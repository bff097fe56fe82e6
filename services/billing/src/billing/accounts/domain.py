"""Accounts' pure rules: their states and their users' roles."""

from __future__ import annotations

from enum import StrEnum


class AccountStatus(StrEnum):
    """Whether the account's contract runs."""

    ACTIVE = "active"
    TERMINATED = "terminated"


class Role(StrEnum):
    """What a user of an account may do."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
