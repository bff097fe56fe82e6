"""The event contracts: described fields, marked personal data, a self-checking envelope."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from shared.contracts import (
    EVENT_TYPES,
    TOPICS,
    AccountTerminated,
    DataAccessed,
    Envelope,
    InvoiceIssued,
    PurgeRequested,
    new_envelope,
)
from shared.contracts.envelope import PERSONAL_DATA_MARK


def _properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = list(schema.get("properties", {}).items())
    for definition in schema.get("$defs", {}).values():
        found.extend(definition.get("properties", {}).items())
    return found


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_every_event_field_is_described(model: type) -> None:
    schema = model.model_json_schema()  # type: ignore[attr-defined]
    undescribed = [name for name, prop in _properties(schema) if not prop.get("description")]
    assert undescribed == []


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (InvoiceIssued, {"seller_name", "name", "email", "description"}),
        (AccountTerminated, {"account_name", "owner_email"}),
        (DataAccessed, {"actor_name"}),
    ],
)
def test_personal_data_fields_are_marked_in_the_schema(model: type, fields: set[str]) -> None:
    schema = model.model_json_schema()  # type: ignore[attr-defined]
    marked = {name for name, prop in _properties(schema) if prop.get(PERSONAL_DATA_MARK)}
    assert fields <= marked


def test_identifiers_and_amounts_are_not_marked_personal() -> None:
    schema = InvoiceIssued.model_json_schema()
    marked = {name for name, prop in _properties(schema) if prop.get(PERSONAL_DATA_MARK)}
    assert not marked & {"account_id", "invoice_id", "total", "currency", "number"}


def test_every_event_type_has_its_topic() -> None:
    assert {t.name for t in TOPICS} == set(EVENT_TYPES)


def test_envelope_carries_cloudevents_attributes_and_the_account_as_subject() -> None:
    account_id = uuid4()
    envelope = new_envelope(
        PurgeRequested(account_id=account_id, saga_id=uuid4()), source="retention"
    )
    wire = envelope.model_dump(mode="json")
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "purge.requested"
    assert wire["source"] == "/quittance/retention"
    assert wire["subject"] == str(account_id)
    assert wire["schemaversion"] == 1
    assert {"id", "time", "data"} <= set(wire)


def test_envelope_refuses_a_type_that_does_not_match_its_payload() -> None:
    envelope = new_envelope(PurgeRequested(account_id=uuid4(), saga_id=uuid4()), source="retention")
    wire = envelope.model_dump(mode="json") | {"type": "invoice.issued"}
    with pytest.raises(ValidationError, match="does not match"):
        Envelope[PurgeRequested].model_validate(wire)


def test_envelope_refuses_a_subject_other_than_the_account() -> None:
    envelope = new_envelope(PurgeRequested(account_id=uuid4(), saga_id=uuid4()), source="retention")
    wire = envelope.model_dump(mode="json") | {"subject": str(uuid4())}
    with pytest.raises(ValidationError, match="subject"):
        Envelope[PurgeRequested].model_validate(wire)


def test_payloads_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        PurgeRequested(account_id=uuid4(), saga_id=uuid4(), card_number="4111111111111111")  # type: ignore[call-arg]
