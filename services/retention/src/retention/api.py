"""Retention's small HTTP surface: sagas in flight and sweeps for operators, their health, the
plans' retention terms, and the purge certificates with the public key that verifies them."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from faststream.asgi import AsgiResponse

from retention.domain import KEPT_REGARDLESS_OF_PLAN, ExportLink, PlanTerms
from retention.services import RetentionService
from retention.sweeps import SweepService
from shared.asgi_api import api_route, json_response, operator_refusal, problem, whole_number
from shared.health import Check, HealthCheck
from shared.signing import ALGORITHM


def saga_routes(service: RetentionService, operator_token: str) -> list[tuple[str, Any]]:
    """`GET /sagas`: every termination in flight and its steps, those needing a person first."""

    @api_route
    async def sagas(scope: Any) -> AsgiResponse:
        if (refused := operator_refusal(scope, operator_token)) is not None:
            return refused
        body = [
            {
                # Ids and states only: an operator sees where a saga is, not whose it is.
                "saga_id": str(saga.id),
                "status": saga.status,
                "step_attempt": saga.step_attempt,
                "step_deadline_at": saga.step_deadline_at.isoformat(),
                "needs_attention": saga.needs_attention,
                "waiting_for": service.waiting_for(saga),
                "steps": service.steps(saga),
                "purge_due_at": saga.purge_due_at.isoformat() if saga.purge_due_at else None,
                "downloads": saga.downloads,
            }
            for saga in await service.sagas()
        ]
        return json_response(body)

    return [("/sagas", sagas)]


def _days(period: timedelta) -> float:
    return round(period.total_seconds() / 86400, 4)


def plan_routes(plans: dict[str, PlanTerms]) -> list[tuple[str, Any]]:
    """`GET /plans`: for every plan, how long each kind of data is kept (public: it is the
    promise of PLAN-RETENTION, the same for every customer of a plan)."""
    body = {
        "plans": {
            name: {
                "grace_period_days": _days(terms.grace_period),
                "kept_days": {str(c): _days(p) for c, p in sorted(terms.kept.items())},
            }
            for name, terms in sorted(plans.items())
        },
        "kept_regardless_of_plan": {str(c): why for c, why in KEPT_REGARDLESS_OF_PLAN.items()},
    }

    @api_route
    async def plans_(scope: Any) -> AsgiResponse:
        return json_response(body)

    return [("/plans", plans_)]


def _sweep_body(sweep: Any, tallies: list[Any]) -> dict[str, Any]:
    return {
        "sweep_id": str(sweep.id),
        "scheduled_for": sweep.slot.isoformat() if sweep.slot else None,
        "dry_run": sweep.dry_run,
        "as_of": sweep.as_of.isoformat(),
        "accounts": sweep.accounts,
        "reports": sweep.reports,
        "expected_reports": sweep.expected_reports,
        "held_reports": sweep.held_reports,
        "rows": sweep.rows,
        "completed_at": sweep.completed_at.isoformat() if sweep.completed_at else None,
        "tables": [
            {
                "service": tally.service,
                "table": tally.table_name,
                "category": tally.category,
                "rows": tally.rows,
                "oldest_at": tally.oldest_at.isoformat() if tally.oldest_at else None,
                "next_due_at": tally.next_due_at.isoformat() if tally.next_due_at else None,
            }
            for tally in tallies
        ],
    }


MAX_SWEPT_ACCOUNTS = 100  # named in one request; a sweep of every account names none


def sweep_routes(sweeps: SweepService, operator_token: str) -> list[tuple[str, Any]]:
    """`GET /sweeps`: the newest sweeps, what each deleted (or would) per table, and when the
    next rows fall due; `POST /sweeps?dry_run=true|false[&account_id=...]`: start one now, of
    every known account or of those named (operators)."""

    async def sweeps_endpoint(scope: Any) -> AsgiResponse:
        if (refused := operator_refusal(scope, operator_token)) is not None:
            return refused
        if scope["method"] != "POST":
            listed = await sweeps.sweeps()
            return json_response([_sweep_body(sweep, tallies) for sweep, tallies in listed])
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        dry_run = query.get("dry_run", ["false"])[-1]
        if dry_run not in ("true", "false"):
            return problem(422, "Invalid field", "dry_run must be true or false", "dry_run")
        named = query.get("account_id", [])
        if len(named) > MAX_SWEPT_ACCOUNTS:
            return problem(
                422, "Invalid field", f"at most {MAX_SWEPT_ACCOUNTS} account ids", "account_id"
            )
        try:
            accounts = [UUID(value) for value in named]
        except ValueError:
            return problem(422, "Invalid field", "account_id must be a UUID", "account_id")
        sweep = await sweeps.start(dry_run=dry_run == "true", accounts=accounts)
        assert sweep is not None  # an operator's sweep takes no slot
        return json_response(_sweep_body(sweep, []), status=202)

    handler = api_route(sweeps_endpoint, ("GET", "HEAD", "POST"))
    return [("/sweeps", handler)]


def sagas_health(service: RetentionService) -> HealthCheck:
    """Unhealthy while a saga needs a person; its overdue steps are named."""

    async def sagas() -> Check:
        stuck = [saga for saga in await service.sagas() if saga.needs_attention]
        if stuck:
            return Check("sagas", False, f"{len(stuck)} saga(s) need a person")
        return Check("sagas", True)

    return sagas


CERTIFICATE_PARTS = ("envelope", "payload", "signature")


def certificate_routes(service: RetentionService) -> list[tuple[str, Any]]:
    """Purge certificates and the key that verifies them. Public: a certificate holds no
    personal data, and its id (a random UUID) is known only to whom it was given.

    - `GET /certificates/signing-key.pem`: the Ed25519 public key (header `Key-Id`);
      `?key_id=` gives a key rotated out, for the certificates it signed;
    - `GET /certificates/signing-keys`: every published key, by id, the current one marked;
    - `GET /certificates?id=<certificate id>`: the certificate, its signed bytes and signature;
      `&part=payload` gives exactly the signed bytes, `&part=signature` the raw 64-byte
      signature: with the key, `openssl pkeyutl -verify -rawin` checks them offline.
    """

    @api_route
    async def signing_key(scope: Any) -> AsgiResponse:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        key_id = query.get("key_id", [service.signing_key.key_id])[-1]
        pem = service.public_keys.get(key_id)
        if pem is None:
            return problem(404, "Not found", "no published key has this id", "key_id")
        return AsgiResponse(
            pem,
            status_code=200,
            headers={"content-type": "application/x-pem-file", "key-id": key_id},
        )

    @api_route
    async def signing_keys(scope: Any) -> AsgiResponse:
        current = service.signing_key.key_id
        return json_response(
            [
                {"key_id": key_id, "current": key_id == current, "pem": pem.decode()}
                for key_id, pem in sorted(service.public_keys.items())
            ]
        )

    @api_route
    async def certificate(scope: Any) -> AsgiResponse:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        part = query.get("part", ["envelope"])[-1]
        if part not in CERTIFICATE_PARTS:
            return problem(422, "Invalid field", f"part must be one of {CERTIFICATE_PARTS}", "part")
        try:
            certificate_id = UUID(query.get("id", [""])[-1])
        except ValueError:
            return problem(422, "Invalid field", "id must be a certificate id (a UUID)", "id")
        found = await service.certificate(certificate_id)
        if found is None or found.payload is None or found.signature is None:
            return problem(404, "Not found", "no signed certificate has this id")
        signature = base64.b64decode(found.signature)
        if part == "payload":
            content, media_type = found.payload.encode(), "application/json"
        elif part == "signature":
            content, media_type = signature, "application/octet-stream"
        else:
            content = json.dumps(
                {
                    "certificate": json.loads(found.payload),
                    "payload": found.payload,
                    "signature": {
                        "algorithm": ALGORITHM,
                        "key_id": found.signing_key_id,
                        "value": found.signature,
                    },
                }
            ).encode()
            media_type = "application/json"
        return AsgiResponse(content, status_code=200, headers={"content-type": media_type})

    return [
        ("/certificates/signing-key.pem", signing_key),
        ("/certificates/signing-keys", signing_keys),
        ("/certificates", certificate),
    ]


DOWNLOAD_BLOCK = 256 * 1024  # bytes read from the store per piece sent


def _link_from(query: dict[str, list[str]]) -> tuple[ExportLink, bytes] | AsgiResponse:
    """The link's parts, or a 422 problem naming the first bad one."""
    try:
        saga_id = UUID(query.get("saga", [""])[-1])
    except ValueError:
        return problem(422, "Invalid field", "saga must be a UUID", "saga")
    try:
        account_id = UUID(query.get("account", [""])[-1])
    except ValueError:
        return problem(422, "Invalid field", "account must be a UUID", "account")
    expires = whole_number(query.get("expires", [""])[-1], max_digits=12)
    if expires is None:
        return problem(422, "Invalid field", "expires must be a Unix time", "expires")
    encoded = query.get("signature", [""])[-1]
    try:
        signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        signature = b""
    if len(signature) != 64:
        return problem(422, "Invalid field", "signature must be 64 bytes, base64url", "signature")
    return ExportLink(saga_id=saga_id, account_id=account_id, expires=expires), signature


def export_routes(service: RetentionService) -> list[tuple[str, Any]]:
    """`GET /exports/download?saga=&account=&expires=&signature=`: the termination's export,
    for the holder of the signed link mailed to the owner, until the grace period ends; each
    download is a data access in the account's audit trail. The link dies with the purge."""

    async def download(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("method") != "GET":  # a HEAD would count as a download without one
            refused = problem(405, "Method not allowed", "use GET", headers={"allow": "GET"})
            await refused(scope, receive, send)
            return
        parsed = _link_from(parse_qs(scope.get("query_string", b"").decode("latin-1")))
        if isinstance(parsed, AsgiResponse):
            await parsed(scope, receive, send)
            return
        link, signature = parsed
        why = service.check_link(link, signature)
        refusal = {
            "forged": (403, "Forbidden", "the link's signature does not match it"),
            "expired": (410, "Gone", "the link expired: the grace period is over"),
        }.get(why)
        opened = None if refusal else await service.open_download(link)
        if opened is None:
            status, title, detail = refusal or (410, "Gone", "the export was purged")
            await problem(status, title, detail)(scope, receive, send)
            return
        key, size = opened
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/zip"),
                    (b"content-length", str(size).encode()),
                    (b"content-disposition", b'attachment; filename="quittance-export.zip"'),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        with await asyncio.to_thread(service.store.reader, key) as bundle:
            while block := await asyncio.to_thread(bundle.read, DOWNLOAD_BLOCK):
                await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return [("/exports/download", download)]
