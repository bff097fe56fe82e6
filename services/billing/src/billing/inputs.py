"""Text input types of billing's API (NO-PAN): moved to shared.input_types next."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# 13-19 digits, optionally split by single spaces or dashes: how card numbers are typed.
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    """Whether text holds something that is a payment card number (NO-PAN)."""
    for match in _CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return True
    return False


def _refuse_card_numbers(value: str) -> str:
    if contains_card_number(value):
        raise ValueError("must not contain a payment card number; use the payment gateway")
    return value


def _refuse_control_characters(value: str) -> str:
    # A CR or LF in a name would otherwise end up in a mail header, a NUL in the database.
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise ValueError("must not contain control characters")
    return value


SafeText = Annotated[
    str, AfterValidator(_refuse_control_characters), AfterValidator(_refuse_card_numbers)
]
"""Free text refused if it holds control characters or a card number (NO-PAN)."""
