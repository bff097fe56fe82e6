"""Passwords: Argon2id with OWASP's parameters, at least 12 characters, never a common one."""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

import pydantic
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 128  # hashing cost grows with the input; nobody types more

# OWASP Password Storage Cheat Sheet: Argon2id, 19 MiB, 2 iterations, 1 lane.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified when the address is unknown, so a sign-in takes as long whether or not it exists.
_DECOY = _HASHER.hash("a decoy password nobody has")


@functools.cache
def _common_passwords() -> frozenset[str]:
    """zxcvbn's list of the 30,000 most common passwords, lowercased."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


_SPACES = " \t\n\r\f\v"  # the ones a paste brings along; the schema's pattern names them too


def _acceptable(password: str) -> str:
    if password.strip(_SPACES) != password:
        raise ValueError("must not start or end with spaces")
    if password.lower() in _common_passwords():
        raise ValueError("is one of the most common passwords: choose another")
    return password


Password = Annotated[
    str,
    pydantic.Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        description=f"{MIN_LENGTH} to {MAX_LENGTH} characters, not a common password.",
        # The pattern states the rule _acceptable applies: no space at either end.
        json_schema_extra={
            "format": "password",
            "writeOnly": True,
            "pattern": r"^[^ \t\n\r\f\v](?:[\s\S]*[^ \t\n\r\f\v])?$",
        },
    ),
    pydantic.AfterValidator(_acceptable),
]


async def hash_password(password: str) -> str:
    """The Argon2id hash to store (in a thread: it takes tens of milliseconds by design)."""
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(password: str, stored: str | None) -> bool:
    """Whether password matches the stored hash; as slow for a user without one."""

    def check() -> bool:
        try:
            return _HASHER.verify(stored or _DECOY, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
