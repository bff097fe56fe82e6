"""Retention's small HTTP surface: sagas in flight for operators, their health, and the purge
certificates with the public key that verifies them."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from faststream.asgi import AsgiResponse, get

from retention.services import RetentionService
from shared.health import Check, HealthCheck
from shared.signing import ALGORITHM


def saga_routes(service: RetentionService, operator_token: str) -> list[tuple[str, Any]]:
    """`GET /sagas`: every termination in flight and its steps, those needing a person first."""

    @get(include_in_schema=False)
    async def sagas(scope: Any) -> AsgiResponse:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").removeprefix(b"Bearer ")
        if not hmac.compare_digest(given, operator_token.encode()):
            return AsgiResponse(
                b'{"title": "the operator token is required"}',
                status_code=401,
                headers={"content-type": "application/problem+json"},
            )
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
            }
            for saga in await service.sagas()
        ]
        return AsgiResponse(
            json.dumps(body).encode(), status_code=200, headers={"content-type": "application/json"}
        )

    return [("/sagas", sagas)]


def sagas_health(service: RetentionService) -> HealthCheck:
    """Unhealthy while a saga needs a person; its overdue steps are named."""

    async def sagas() -> Check:
        stuck = [saga for saga in await service.sagas() if saga.needs_attention]
        if stuck:
            return Check("sagas", False, f"{len(stuck)} saga(s) need a person")
        return Check("sagas", True)

    return sagas


CERTIFICATE_PARTS = ("envelope", "payload", "signature")


def _problem(status: int, title: str, detail: str, field: str | None = None) -> AsgiResponse:
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
        headers={"content-type": "application/problem+json"},
    )


def certificate_routes(service: RetentionService) -> list[tuple[str, Any]]:
    """Purge certificates and the key that verifies them. Public: a certificate holds no
    personal data, and its id (a random UUID) is known only to whom it was given.

    - `GET /certificates/signing-key.pem`: the Ed25519 public key (header `Key-Id`);
    - `GET /certificates?id=<certificate id>`: the certificate, its signed bytes and signature;
      `&part=payload` gives exactly the signed bytes, `&part=signature` the raw 64-byte
      signature: with the key, `openssl pkeyutl -verify -rawin` checks them offline.
    """

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
    async def certificate(scope: Any) -> AsgiResponse:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        part = query.get("part", ["envelope"])[-1]
        if part not in CERTIFICATE_PARTS:
            return _problem(
                422, "Invalid field", f"part must be one of {CERTIFICATE_PARTS}", "part"
            )
        try:
            certificate_id = UUID(query.get("id", [""])[-1])
        except ValueError:
            return _problem(422, "Invalid field", "id must be a certificate id (a UUID)", "id")
        found = await service.certificate(certificate_id)
        if found is None or found.payload is None or found.signature is None:
            return _problem(404, "Not found", "no signed certificate has this id")
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

    return [("/certificates/signing-key.pem", signing_key), ("/certificates", certificate)]
