"""Decimals travel as strings whose schema pattern says exactly what the API accepts."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from billing.invoices.models import QUANTITY_PATTERN, UNIT_PRICE_PATTERN, InvoiceLineCreate


def _line(**fields: Any) -> InvoiceLineCreate:
    return InvoiceLineCreate.model_validate(
        {"description": "Work", "quantity": "1", "unit_price": "1"} | fields
    )


def _accepted(**fields: Any) -> bool:
    try:
        _line(**fields)
    except ValidationError:
        return False
    return True


def _well_written(text: str) -> bool:
    """No leading zero before other digits, at most 4 decimal places."""
    canonical = not (len(text.split(".")[0]) > 1 and text.startswith("0"))
    return canonical and -Decimal(text).as_tuple().exponent <= 4  # type: ignore[operator]


decimal_texts = st.builds(
    lambda whole, fraction: whole + (f".{fraction}" if fraction else ""),
    st.one_of(
        st.from_regex(r"[0-9]{1,14}", fullmatch=True),
        st.sampled_from(["0", "1000000000", "1000000000000"]),
    ),
    st.one_of(st.just(""), st.from_regex(r"[0-9]{1,5}", fullmatch=True)),
)


@given(decimal_texts)
def test_the_quantity_pattern_accepts_exactly_what_the_field_accepts(text: str) -> None:
    in_pattern = re.fullmatch(QUANTITY_PATTERN, text) is not None
    value = Decimal(text)
    expected = _well_written(text) and 0 < value <= 1_000_000_000
    assert in_pattern == expected
    if expected:
        assert _accepted(quantity=text)


@given(decimal_texts)
def test_the_unit_price_pattern_accepts_exactly_what_the_field_accepts(text: str) -> None:
    in_pattern = re.fullmatch(UNIT_PRICE_PATTERN, text) is not None
    value = Decimal(text)
    expected = _well_written(text) and 0 <= value <= 1_000_000_000_000
    assert in_pattern == expected
    if expected and value <= Decimal("999999999999.99"):
        assert _accepted(unit_price=text)


@pytest.mark.parametrize("value", [2, 2.5, "2e3", " 2", "+2", "2.", ".5", "", "NaN", "Infinity"])
def test_a_quantity_that_is_not_a_plain_decimal_string_is_refused(value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        _line(quantity=value)
    assert refused.value.errors()[0]["type"] == "decimal_string"


def test_the_schema_documents_decimals_as_patterned_strings_both_ways() -> None:
    line = InvoiceLineCreate.model_json_schema()["properties"]
    assert line["quantity"]["type"] == "string"
    assert line["quantity"]["pattern"] == QUANTITY_PATTERN
    assert line["unit_price"]["pattern"] == UNIT_PRICE_PATTERN
