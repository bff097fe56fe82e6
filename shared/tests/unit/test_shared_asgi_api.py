"""The consumer services' small HTTP surfaces read numbers in query strings one way: ASCII
digits only, bounded in length, so an odd digit is a clear 422 and never a crash."""

from __future__ import annotations

import pytest

from shared.asgi_api import whole_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("42", 42), ("000123", 123), ("9" * 18, int("9" * 18))],
)
def test_whole_numbers_in_ascii_digits_are_read(text: str, expected: int) -> None:
    assert whole_number(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "-1", "+1", "1.0", "1e3", " 1", "1 ", "²", "\uff11\uff12", "٣", "9" * 19, "0x10", "1_000"],
)
def test_anything_else_is_refused_not_raised(text: str) -> None:
    assert whole_number(text) is None


def test_the_length_bound_is_the_callers() -> None:
    assert whole_number("1" * 12, max_digits=12) == int("1" * 12)
    assert whole_number("1" * 13, max_digits=12) is None
