"""Schemathesis hooks for the billing fuzz run: each operation gets the credential it needs.

Loaded by the schemathesis CLI through SCHEMATHESIS_HOOKS; FUZZ_BILLING_URL says where billing
is, FUZZ_SECURITY_ADMIN (JSON) the headers of a signed-in security admin, who adds the staff.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests
import schemathesis

BILLING_URL = os.environ.get("FUZZ_BILLING_URL", "http://127.0.0.1:8000")
SECURITY_ADMIN: dict[str, str] = json.loads(os.environ.get("FUZZ_SECURITY_ADMIN", "{}"))
STAFF_PASSWORD = "a fuzzing staff member's passphrase"


def _post(path: str, body: dict[str, Any], token: str | dict[str, str] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if isinstance(token, str) else token or {}
    response = requests.post(f"{BILLING_URL}{path}", json=body, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


def _support_staff() -> tuple[str, dict[str, str]]:
    """A support staff member, added by the security admin, enrolled and signed in."""
    email = f"staff-{uuid.uuid4().hex[:8]}@example.com"
    added = _post(
        "/staff", {"name": "Fuzz Staff", "email": email, "roles": ["support"]}, SECURITY_ADMIN
    )
    enrolment = {"email": email, "code": added["enrolment_code"], "password": STAFF_PASSWORD}
    _post("/staff/enrolment", enrolment)
    signed_in = requests.post(
        f"{BILLING_URL}/staff/sessions",
        json={"email": email, "password": STAFF_PASSWORD},
        timeout=30,
    )
    signed_in.raise_for_status()
    cookie = signed_in.headers["set-cookie"].split(";")[0]
    return added["staff"]["id"], {"Cookie": cookie, "X-CSRF-Token": signed_in.json()["csrf_token"]}


def _open_account() -> tuple[str, str]:
    """A new account with one customer: its owner's API key and the customer's id."""
    tag = uuid.uuid4().hex[:8]
    owner = {"name": "Fuzz", "email": f"fuzz-{tag}@example.com"}
    opened = _post("/accounts", {"name": f"Fuzz {tag}", "owner": owner})
    key: str = opened["api_key"]
    customer = _post("/customers", {"name": "Buyer", "email": f"buyer-{tag}@example.com"}, key)
    return key, str(customer["id"])


class _Credentials:
    """The owner, and a support staff member with a grant on the owner's account."""

    def __init__(self) -> None:
        self.owner, self.customer_id = _open_account()
        self.staff_id, self.staff = _support_staff()
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


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """A statement's period: a well-formed start put within ten years before the end, as a
    person asks for one (every phase, the coverage phase's boundary dates too); malformed
    dates stay as generated."""
    label = f"{case.operation.method.upper()} {case.operation.path}"
    if label != "GET /statements/{customer_id}" or not isinstance(case.query, dict):
        return case
    dates = {}
    for name in ("start", "end"):
        try:
            dates[name] = date.fromisoformat(str(case.query.get(name)))
        except ValueError:
            continue
    end = dates.get("end", datetime.now(UTC).date())
    if "start" in dates and not end - timedelta(days=3650) <= dates["start"] <= end:
        case.query["start"] = (end - timedelta(days=30)).isoformat()
    return case


@schemathesis.auth(refresh_interval=None)
class BillingAuth:
    """Owner key by default; the security admin for managing staff; a support staff member for
    staff reads and their own password; a fresh account for each termination, which revokes the
    key it is called with."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> dict[str, str]:
        credentials = _known()
        path = case.operation.path
        if path == "/staff" or path.startswith("/staff/{staff_id"):
            return SECURITY_ADMIN
        if path.startswith("/staff/"):
            return credentials.staff
        if path == "/account/termination":
            return {"Authorization": f"Bearer {_open_account()[0]}"}
        return {"Authorization": f"Bearer {credentials.owner}"}

    def set(
        self, case: schemathesis.Case, data: dict[str, str], ctx: schemathesis.AuthContext
    ) -> None:
        case.headers = {**(case.headers or {}), **data}
