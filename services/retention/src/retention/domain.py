"""Retention's pure rules: saga states, the CSV format of the export, purge certificates."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any
from uuid import UUID

from shared.export_store import canonical_json

# A cell starting with one of these is run as a formula by spreadsheet programs.
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


class SagaStatus(StrEnum):
    """Where a termination is; a finished saga is deleted, leaving only its certificate."""

    EXPORTING = "exporting"
    DELIVERING = "delivering"
    PURGING = "purging"


def csv_cell(value: Any) -> str:
    """One cell: structured values as canonical JSON, formula triggers neutralised."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = canonical_json(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if text.startswith(_FORMULA_TRIGGERS) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def records_to_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """RFC 4180 CSV (CRLF, quoted where needed) with a header of every key seen, in order."""
    rows = list(records)
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(column)) for column in columns])
    return out.getvalue()


def account_reference(account_id: UUID, key: bytes) -> str:
    """A keyed hash of the account id: the certificate proves the purge without naming it."""
    return hmac.new(key, str(account_id).encode(), hashlib.sha256).hexdigest()


def certificate_digest(content: Mapping[str, Any]) -> str:
    """SHA-256 of the certificate's canonical JSON."""
    return hashlib.sha256(canonical_json(dict(content)).encode()).hexdigest()
