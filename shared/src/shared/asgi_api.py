"""The small HTTP surfaces of the consumer services (retention, audit): JSON answers, RFC 9457
problems naming the field, and the operator token's check, the same in each."""

from __future__ import annotations

import hmac
import json
from typing import Any

from faststream.asgi import AsgiResponse


def json_response(
    body: Any, status: int = 200, media_type: str = "application/json"
) -> AsgiResponse:
    """A JSON answer."""
    return AsgiResponse(
        json.dumps(body).encode(), status_code=status, headers={"content-type": media_type}
    )


def problem(status: int, title: str, detail: str, field: str | None = None) -> AsgiResponse:
    """An RFC 9457 problem; `field` names the query parameter or field at fault."""
    body: dict[str, Any] = {
        "type": f"https://quittance.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["errors"] = [{"field": field, "message": detail}]
    return json_response(body, status, "application/problem+json")


def whole_number(text: str, max_digits: int = 18) -> int | None:
    """A whole number from 0 written in ASCII digits, at most `max_digits` of them; None for
    anything else (str.isdigit alone lets through '²', which int() then refuses)."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def bearer(scope: Any) -> str:
    """The request's bearer token ("" without one)."""
    headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    return headers.get(b"authorization", b"").removeprefix(b"Bearer ").decode("latin-1")


def operator_refusal(scope: Any, operator_token: str) -> AsgiResponse | None:
    """A 401 problem unless the request bears the operator token (compared in constant time)."""
    if hmac.compare_digest(bearer(scope).encode("latin-1"), operator_token.encode()):
        return None
    return problem(401, "Unauthorized", "the operator token is required")
