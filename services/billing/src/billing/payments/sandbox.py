"""The sandbox gateway adapter: the dev stack's hosted payment page and its signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

from billing.payments.domain import to_minor_units
from billing.payments.gateway import (
    Checkout,
    CheckoutRequest,
    GatewayError,
    GatewayEvent,
    GatewayEventKind,
    RefundRequest,
    WebhookRejected,
    checked_event,
)
from shared.asgi_api import whole_number

SIGNATURE_HEADER = "sandbox-signature"
_KINDS = {
    "payment.succeeded": GatewayEventKind.PAYMENT_SUCCEEDED,
    "refund.succeeded": GatewayEventKind.REFUND_SUCCEEDED,
}


def verify_signature(
    body: bytes, header: str | None, secrets: list[str], *, tolerance_s: int, now: float
) -> None:
    """Check a `t=<unix>,v1=<hex>` header: an HMAC-SHA256 of "<t>.<body>" under any of the
    secrets (two while one is rotated out), signed no longer than tolerance_s ago."""
    if not header:
        raise WebhookRejected("the signature header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and (number := whole_number(value)) is not None:
            timestamp = number
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected("the signature header is malformed")
    if abs(now - timestamp) > tolerance_s:
        raise WebhookRejected("the signature is too old or from the future: a replay?")
    signed = f"{timestamp}.".encode() + body
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return
    raise WebhookRejected("the signature does not match")


class SandboxGateway:
    """Speaks the sandbox's JSON API; verifies its webhooks' signatures."""

    name = "sandbox"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        webhook_secrets: list[str],
        tolerance_s: int = 300,
        timeout_s: float = 10.0,
    ) -> None:
        self.webhook_secrets = webhook_secrets
        self.tolerance_s = tolerance_s
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
        )

    async def _post(self, path: str, body: dict[str, Any], idempotency_key: str) -> Any:
        try:
            answer = await self.client.post(
                path, json=body, headers={"Idempotency-Key": idempotency_key}
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"the payment gateway could not be reached ({exc})") from exc
        try:
            found = answer.json()
        except ValueError:
            found = None
        if answer.status_code != 200 or not isinstance(found, dict):
            error = found.get("error") if isinstance(found, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise GatewayError(
                f"the payment gateway answered {answer.status_code}: {message or 'no reason'}"
            )
        return found

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """A checkout session for the amount, with billing's checkout id as its reference."""
        session = await self._post(
            "/v1/checkout_sessions",
            {
                "amount": to_minor_units(request.amount, request.currency),
                "currency": request.currency,
                "reference": str(request.checkout_id),
                "description": request.description,
                "success_url": request.return_url,
            },
            idempotency_key=str(request.checkout_id),
        )
        if not isinstance(session.get("id"), str) or not isinstance(session.get("url"), str):
            raise GatewayError("the payment gateway gave no session or page")
        return Checkout(session_id=session["id"], url=session["url"])

    async def refund(self, request: RefundRequest) -> str:
        """A refund of the payment; the webhook that follows makes it count."""
        refund = await self._post(
            "/v1/refunds",
            {
                "payment": request.payment_id,
                "amount": to_minor_units(request.amount, request.currency),
                "reference": str(request.refund_id),
            },
            idempotency_key=str(request.refund_id),
        )
        if not isinstance(refund.get("id"), str):
            raise GatewayError("the payment gateway gave no refund id")
        return str(refund["id"])

    def verify(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """The event, once its signature holds."""
        verify_signature(
            body,
            headers.get(SIGNATURE_HEADER),
            self.webhook_secrets,
            tolerance_s=self.tolerance_s,
            now=time.time(),
        )
        try:
            event = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("the event is not JSON") from exc
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict):
            raise WebhookRejected("the event has no data object")
        return checked_event(
            event_id=event.get("id"),
            kind=_KINDS.get(str(event.get("type"))),
            payment_id=data.get("payment"),
            reference=data.get("reference"),
            refund_id=data.get("refund"),
            units=data.get("amount"),
            currency=data.get("currency"),
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()
