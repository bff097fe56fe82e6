"""Retention's pure rules."""

from __future__ import annotations

from uuid import uuid4

from retention.domain import account_reference


def test_termination_certificate_names_the_account_only_by_keyed_hash() -> None:
    account_id = uuid4()
    reference = account_reference(account_id, b"key-1")
    assert str(account_id) not in reference
    assert reference == account_reference(account_id, b"key-1")
    assert reference != account_reference(account_id, b"key-2")
