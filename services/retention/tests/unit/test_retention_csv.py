"""The export's CSV format (TERMINATION): RFC 4180, JSON in structured fields, formula-safe."""

from __future__ import annotations

import csv
import io
import json
from uuid import uuid4

from retention.domain import account_reference, csv_cell, records_to_csv


def test_termination_structured_values_become_canonical_json_cells() -> None:
    assert csv_cell({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_termination_cells_that_spreadsheets_would_run_are_neutralised() -> None:
    assert csv_cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("-12.50") == "-12.50", "negative numbers stay numbers"


def test_termination_csv_round_trips_quotes_commas_and_newlines() -> None:
    records = [{"name": 'Acme, "the" firm', "note": "line1\nline2", "lines": [{"q": 1}]}]
    text = records_to_csv(records)
    assert "\r\n" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["name"] == 'Acme, "the" firm'
    assert rows[0]["note"] == "line1\nline2"
    assert json.loads(rows[0]["lines"]) == [{"q": 1}]


def test_termination_header_covers_every_key_seen() -> None:
    text = records_to_csv([{"a": 1}, {"b": 2}])
    assert text.splitlines()[0] == "a,b"


def test_termination_certificate_names_the_account_only_by_keyed_hash() -> None:
    account_id = uuid4()
    reference = account_reference(account_id, b"key-1")
    assert str(account_id) not in reference
    assert reference == account_reference(account_id, b"key-1")
    assert reference != account_reference(account_id, b"key-2")
