"""Audit's HTTP surface: the signed checkpoints and their key (public: they name no account),
and verification of the chains (operators)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from faststream.asgi import AsgiResponse

from audit.repository import TrailQuery
from audit.services import AuditService, Verification
from shared.asgi_api import (
    api_route,
    bearer,
    json_response,
    operator_refusal,
    problem,
    whole_number,
)
from shared.contracts import AccessPurpose
from shared.participant import spreadsheet_safe
from shared.tokens import TokenError, TokenReader


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
    `GET /verify[?account_id=][&first=][&last=]` and `GET /alerts` (operator token)."""

    @api_route
    async def checkpoints(scope: Any) -> AsgiResponse:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        after = whole_number(query.get("after", ["0"])[-1])
        if after is None:
            return problem(422, "Invalid field", "after must be a checkpoint number", "after")
        found = await service.checkpoints(after=after)
        return json_response(
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

    @api_route
    async def signing_key(scope: Any) -> AsgiResponse:
        return AsgiResponse(
            service.signing_key.public_pem(),
            status_code=200,
            headers={
                "content-type": "application/x-pem-file",
                "key-id": service.signing_key.key_id,
            },
        )

    @api_route
    async def verify(scope: Any) -> AsgiResponse:
        if (refused := operator_refusal(scope, operator_token)) is not None:
            return refused
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        account_id = None
        if "account_id" in query:
            try:
                account_id = UUID(query["account_id"][-1])
            except ValueError:
                return problem(422, "Invalid field", "account_id must be a UUID", "account_id")
        bounds: dict[str, int | None] = {"first": 1, "last": None}
        for name in bounds:
            if name in query:
                value = whole_number(query[name][-1])
                if value is None or value < 1:
                    return problem(
                        422, "Invalid field", f"{name} must be a global sequence (1 up)", name
                    )
                bounds[name] = value
        first, last = bounds["first"] or 1, bounds["last"]
        if last is not None and last < first:
            return problem(422, "Invalid field", "last must not come before first", "last")
        result = await service.verify(account_id, first=first, last=last)
        return json_response({**verification_body(result), "first": first, "last": last})

    @api_route
    async def alerts(scope: Any) -> AsgiResponse:
        if (refused := operator_refusal(scope, operator_token)) is not None:
            return refused
        return json_response(
            [
                {
                    "alert_id": str(alert.id),
                    "kind": alert.kind,
                    "actor_id": alert.actor_id,
                    "detail": alert.detail,
                    "raised_at": alert.raised_at.isoformat(),
                }
                for alert in await service.alerts()
            ]
        )

    return [
        ("/checkpoints", checkpoints),
        ("/checkpoints/signing-key.pem", signing_key),
        ("/verify", verify),
        ("/alerts", alerts),
    ]


REPORT_COLUMNS = (
    "global_seq",
    "account_id",
    "account_seq",
    "occurred_at",
    "kind",
    "actor_type",
    "actor_id",
    "actor_name",
    "purpose",
    "reason",
    "grant_id",
    "outcome",
    "resource_type",
    "resource_id",
)
PURPOSES = frozenset(str(purpose) for purpose in AccessPurpose)
REPORT_ROLES = frozenset({"owner", "admin"})
MAX_PAGE = 500


def _row(entry: Any, part: Any) -> dict[str, Any]:
    return {
        "global_seq": entry.global_seq,
        "account_id": str(entry.account_id),
        "account_seq": entry.account_seq,
        "occurred_at": entry.occurred_at.isoformat(),
        "kind": entry.kind,
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "actor_name": None if part is None else part.actor_name,  # None: erased
        "purpose": entry.purpose,
        "reason": None if part is None else part.reason,
        "grant_id": None if entry.grant_id is None else str(entry.grant_id),
        "outcome": entry.outcome,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
    }


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            ["" if row[c] is None else spreadsheet_safe(str(row[c])) for c in REPORT_COLUMNS]
        )
    return out.getvalue().encode()


def _query_from(params: dict[str, list[str]], *, staff: bool) -> TrailQuery | AsgiResponse:
    """The query's filters, or a 422 problem naming the first bad one."""
    one = {name: values[-1] for name, values in params.items()}
    try:
        after = int(one.get("after", "0"))
        if not 0 <= after < 2**62:
            raise ValueError
    except ValueError:
        return problem(422, "Invalid field", "after must be an entry's global_seq", "after")
    try:
        limit = int(one.get("limit", "100"))
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError
    except ValueError:
        return problem(422, "Invalid field", f"limit must be 1 to {MAX_PAGE}", "limit")
    purpose = one.get("purpose")
    if purpose is not None and purpose not in PURPOSES:
        return problem(
            422, "Invalid field", f"purpose must be one of {sorted(PURPOSES)}", "purpose"
        )
    actor_id = one.get("actor_id")
    if actor_id is not None and (len(actor_id) > 200 or not actor_id.isprintable()):
        return problem(422, "Invalid field", "actor_id must be printable text", "actor_id")
    uuids: dict[str, UUID | None] = {}
    for name in ("grant_id", "account_id"):
        try:
            uuids[name] = UUID(one[name]) if name in one else None
        except ValueError:
            return problem(422, "Invalid field", f"{name} must be a UUID", name)
    if uuids["account_id"] is not None and not staff:
        return problem(422, "Invalid field", "the report is of your own account", "account_id")
    times: dict[str, datetime | None] = {}
    for name in ("from", "to"):
        try:
            times[name] = datetime.fromisoformat(one[name]) if name in one else None
        except ValueError:
            times[name] = None
            return problem(422, "Invalid field", f"{name} must be an ISO 8601 time", name)
        value = times[name]
        if value is not None and value.tzinfo is None:
            return problem(422, "Invalid field", f"{name} must name its time zone", name)
    if one.get("format", "json") not in ("json", "csv"):
        return problem(422, "Invalid field", "format must be json or csv", "format")
    return TrailQuery(
        account_id=uuids["account_id"],
        actor_id=actor_id,
        purpose=purpose,
        grant_id=uuids["grant_id"],
        since=times["from"],
        until=times["to"],
        after=after,
        limit=limit,
    )


def report_routes(service: AuditService, tokens: TokenReader) -> list[tuple[str, Any]]:
    """`GET /access-report`: who read the account's data, when, under which purpose and grant,
    for its owner or an admin, with a token billing signed (`POST /account/access-report-token`
    there); `GET /entries`: the whole trail for security staff (`POST /staff/audit-token`).
    Both filter by actor, purpose, grant and time (`from`, `to`), page with `after` and
    `limit`, and answer JSON or, with `format=csv`, CSV."""

    def _claims(scope: Any) -> dict[str, Any] | AsgiResponse:
        try:
            return tokens.read(bearer(scope))
        except TokenError:
            return problem(401, "Unauthorized", "a valid token from billing is required")

    async def answer(scope: Any, query: TrailQuery) -> AsgiResponse:
        found = await service.query(query)
        rows = [_row(entry, part) for entry, part in found]
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if params.get("format", ["json"])[-1] == "csv":
            return AsgiResponse(
                _csv(rows),
                status_code=200,
                headers={
                    "content-type": "text/csv; charset=utf-8",
                    "content-disposition": 'attachment; filename="access-report.csv"',
                    "cache-control": "no-store",
                },
            )
        following = rows[-1]["global_seq"] if len(rows) == query.limit else None
        return json_response({"entries": rows, "next_after": following})

    @api_route
    async def access_report(scope: Any) -> AsgiResponse:
        claims = _claims(scope)
        if isinstance(claims, AsgiResponse):
            return claims
        if claims.get("kind") != "user" or claims.get("role") not in REPORT_ROLES:
            return problem(403, "Forbidden", "the report is for the account's owner and admins")
        query = _query_from(parse_qs(scope.get("query_string", b"").decode("latin-1")), staff=False)
        if isinstance(query, AsgiResponse):
            return query
        # The account is the token's, whatever else is asked: no other tenant's entry is read.
        own = replace(query, account_id=UUID(str(claims["account_id"])))
        return await answer(scope, own)

    @api_route
    async def entries(scope: Any) -> AsgiResponse:
        claims = _claims(scope)
        if isinstance(claims, AsgiResponse):
            return claims
        if claims.get("kind") != "staff" or "security" not in claims.get("roles", []):
            return problem(403, "Forbidden", "the trail is for security staff")
        query = _query_from(parse_qs(scope.get("query_string", b"").decode("latin-1")), staff=True)
        if isinstance(query, AsgiResponse):
            return query
        return await answer(scope, query)

    return [("/access-report", access_report), ("/entries", entries)]
