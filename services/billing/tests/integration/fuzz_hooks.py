"""Schemathesis hooks for the billing fuzz run: each operation gets the credential it needs.

Loaded by the schemathesis CLI through SCHEMATHESIS_HOOKS; FUZZ_BILLING_URL and
FUZZ_OPERATOR_TOKEN say where billing is and how its operator authenticates.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import schemathesis

BILLING_URL = os.environ.get("FUZZ_BILLING_URL", "http://127.0.0.1:8000")
OPERATOR_TOKEN = os.environ.get("FUZZ_OPERATOR_TOKEN", "")


def _post(path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.post(f"{BILLING_URL}{path}", json=body, headers=headers, timeout=30)
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return created


def _open_account() -> tuple[str, str]:
    """A new account with one customer: its owner's API key and the customer's id."""
    tag = uuid.uuid4().hex[:8]
    owner = {"name": "Fuzz", "email": f"fuzz-{tag}@example.com"}
    opened = _post("/accounts", {"name": f"Fuzz {tag}", "owner": owner})
    key: str = opened["api_key"]
    customer = _post("/customers", {"name": "Buyer", "email": f"buyer-{tag}@example.com"}, key)
    return key, str(customer["id"])


class _Credentials:
    """The owner, a staff member with a grant on the owner's account, and the operator."""

    def __init__(self) -> None:
        self.owner, self.customer_id = _open_account()
        email = f"staff-{uuid.uuid4().hex[:8]}@example.com"
        staff = _post("/staff", {"name": "Fuzz Staff", "email": email}, OPERATOR_TOKEN)
        self.staff: str = staff["api_key"]
        self.staff_id = str(staff["staff"]["id"])
        grant = {
            "staff_id": self.staff_id,
            "purpose": "support",
            "reason": "FUZZ-1",
            "expires_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        }
        _post("/access-grants", grant, self.owner)


_credentials: _Credentials | None = None


def _known() -> _Credentials:
    global _credentials
    if _credentials is None:
        _credentials = _Credentials()
    return _credentials


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _is_datetime(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    """Point schema-valid references at data that exists, and dates into the window around now.

    Random UUIDs name no customer or staff member, and random dates fall before today: without
    this, nearly every generated invoice and grant stops at those checks. Values that are not a
    well-formed UUID or date stay as generated, so malformed input still gets to the API.
    """
    operation = context.operation
    if operation is None or not isinstance(body, dict):
        return body
    label = f"{operation.method.upper()} {operation.path}"
    if label == "POST /invoices":
        if _is_uuid(body.get("customer_id")):
            body["customer_id"] = _known().customer_id
        if isinstance(body.get("due_date"), str) and _is_datetime(body["due_date"]):
            body["due_date"] = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    elif label == "POST /access-grants":
        if _is_uuid(body.get("staff_id")):
            body["staff_id"] = _known().staff_id
        if _is_datetime(body.get("expires_at")):
            body["expires_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return body


@schemathesis.auth(refresh_interval=None)
class BillingAuth:
    """Owner key by default; operator for staff registration; staff for staff reads; a fresh
    account for each termination, which revokes the key it is called with."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        credentials = _known()
        method, path = case.operation.method.upper(), case.operation.path
        if (method, path) == ("POST", "/staff"):
            return OPERATOR_TOKEN
        if path.startswith("/staff/"):
            return credentials.staff
        if path == "/account/termination":
            return _open_account()[0]
        return credentials.owner

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
