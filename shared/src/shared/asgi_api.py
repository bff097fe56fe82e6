"""The small HTTP surfaces of the consumer services (notifications, retention, audit): routes
that answer a wrong method with a problem and let errors reach the app's problem answer, JSON
answers, RFC 9457 problems naming the field, and the operator token's check, the same in each."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from faststream.asgi import AsgiResponse, HttpHandler


def json_response(
    body: Any, status: int = 200, media_type: str = "application/json"
) -> AsgiResponse:
    """A JSON answer."""
    return AsgiResponse(
        json.dumps(body).encode(), status_code=status, headers={"content-type": media_type}
    )


def problem(
    status: int,
    title: str,
    detail: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsgiResponse:
    """An RFC 9457 problem; `field` names the query parameter or field at fault."""
    body: dict[str, Any] = {
        "type": f"https://quittance.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["errors"] = [{"field": field, "message": detail}]
    return AsgiResponse(
        json.dumps(body).encode(),
        status_code=status,
        headers={"content-type": "application/problem+json", **(headers or {})},
    )


Endpoint = Callable[[Any], Awaitable[AsgiResponse]]


class ApiRoute(HttpHandler):
    """A route of a consumer service: a method it does not take is a 405 problem naming the ones
    it does, and an error escapes to the app, which answers it as a problem (503 for an outage,
    500 else, logging no values); FastStream's own handler answers both in plain text."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer the request with the endpoint, or with a 405 problem."""
        response: Any
        if scope["method"] not in self.methods:
            allowed = ", ".join(self.methods)
            response = problem(
                405,
                "Method not allowed",
                f"this route takes {allowed}",
                headers={"allow": allowed},
            )
        else:
            response = await self.func(scope)  # FastStream types it as any ASGI app
        await response(scope, receive, send)


def api_route(endpoint: Endpoint, methods: Sequence[str] = ("GET", "HEAD")) -> ApiRoute:
    """Serve an endpoint `(scope) -> AsgiResponse` for these methods (GET and HEAD by default)."""
    return ApiRoute(endpoint, include_in_schema=False, methods=tuple(methods))


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
