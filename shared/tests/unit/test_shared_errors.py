"""Failures described without the values they carried."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import describe

MARK = "PII-MARK-4711"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int


def test_a_validation_error_names_paths_and_kinds_not_values() -> None:
    with pytest.raises(ValidationError) as refused:
        _Strict.model_validate({"amount": MARK})
    described = describe(refused.value)
    assert described.startswith("ValidationError: amount: ")
    assert MARK not in described


def test_an_unknown_field_is_not_named_because_its_name_is_input() -> None:
    with pytest.raises(ValidationError) as refused:
        _Strict.model_validate({"amount": 1, f"note {MARK}": MARK})
    described = describe(refused.value)
    assert "<unknown field>" in described
    assert MARK not in described
