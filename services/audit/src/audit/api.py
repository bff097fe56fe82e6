"""Audit's HTTP surface: the signed checkpoints and their key (public: they name no account),
and verification of the chains (operators)."""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from faststream.asgi import AsgiResponse, get

from audit.services import AuditService, Verification


def _json(body: Any, status: int = 200, media_type: str = "application/json") -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(), status_code=status, headers={"content-type": media_type}
    )


def _problem(status: int, title: str, detail: str, field: str | None = None) -> AsgiResponse:
    body: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if field is not None:
        body["errors"] = [{"field": field, "message": detail}]
    return _json(body, status, "application/problem+json")


def verification_body(result: Verification) -> dict[str, Any]:
    """A verification as JSON: what was checked, and the first thing wrong."""
    finding = result.finding
    return {
        "verified": finding is None,
        "entries": result.entries,
        "links": result.links,
        "checkpoints": result.checkpoints,
        "first_problem": None
        if finding is None
        else {
            "problem": finding.problem,
            "global_seq": finding.global_seq,
            "account_id": finding.account_id,
            "account_seq": finding.account_seq,
            "detail": finding.detail,
        },
    }


def audit_routes(service: AuditService, operator_token: str) -> list[tuple[str, Any]]:
    """`GET /checkpoints?after=<n>`, `GET /checkpoints/signing-key.pem` (public);
    `GET /verify[?account_id=]` (operator token)."""

    @get(include_in_schema=False)
    async def checkpoints(scope: Any) -> AsgiResponse:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        after = query.get("after", ["0"])[-1]
        if not after.isdigit() or len(after) > 18:
            return _problem(422, "Invalid field", "after must be a checkpoint number", "after")
        found = await service.checkpoints(after=int(after))
        return _json(
            [
                {
                    "number": c.number,
                    "payload": c.payload,
                    "signature": c.signature,
                    "signing_key_id": c.signing_key_id,
                }
                for c in found
            ]
        )

    @get(include_in_schema=False)
    async def signing_key(scope: Any) -> AsgiResponse:
        return AsgiResponse(
            service.signing_key.public_pem(),
            status_code=200,
            headers={
                "content-type": "application/x-pem-file",
                "key-id": service.signing_key.key_id,
            },
        )

    @get(include_in_schema=False)
    async def verify(scope: Any) -> AsgiResponse:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").removeprefix(b"Bearer ")
        if not hmac.compare_digest(given, operator_token.encode()):
            return _problem(401, "Unauthorized", "the operator token is required")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        account_id = None
        if "account_id" in query:
            try:
                account_id = UUID(query["account_id"][-1])
            except ValueError:
                return _problem(422, "Invalid field", "account_id must be a UUID", "account_id")
        return _json(verification_body(await service.verify(account_id)))

    return [
        ("/checkpoints", checkpoints),
        ("/checkpoints/signing-key.pem", signing_key),
        ("/verify", verify),
    ]
