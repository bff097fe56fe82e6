"""The sandbox payment gateway: a hosted payment page outside billing, with signed webhooks.

It stands where a real gateway (Stripe) stands, as its own process, so that billing never sees a
card number (NO-PAN): billing asks for a checkout session over the API, the payer types the card
on this page, and billing learns of the payment only from a signed webhook.

API (bearer secret key; JSON; amounts in the currency's minor units; `Idempotency-Key` honoured):
  POST /v1/checkout_sessions {amount, currency, reference, description, success_url}
  POST /v1/refunds {payment, amount, reference}
  GET  /v1/events                      what was sent, with each delivery's outcome
  POST /v1/events/{id}/resend          send an event again, freshly signed (a replay)
Payer: GET /pay/{session} shows the page; POST /pay/{session} pays. Test cards: 4242 4242 4242
4242 pays, 4000 0000 0000 0002 is declined; any future expiry, any CVC.

Webhooks carry `Sandbox-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the
webhook secret, Stripe's scheme; a delivery answered with anything but 2xx is retried with
exponential backoff. State is in memory: a restarted sandbox has forgotten its sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import json
import secrets
import string
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

SIGNATURE_HEADER = "Sandbox-Signature"
DECLINED_CARD = "4000000000000002"
SESSION_LIFETIME_S = 24 * 3600


def _token() -> str:
    """An id part of letters only: digits in ids could read as a card number to billing."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(24))


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for a webhook body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def luhn_valid(digits: str) -> bool:
    """Whether a card number passes the Luhn check (the page refuses mistyped numbers)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Deliveries of a webhook before the sandbox gives up (0.5 s, doubling: about a minute).
DELIVERY_ATTEMPTS = 8


@dataclass
class Session:
    """A checkout session: one payment of a fixed amount, open until paid or expired."""

    id: str
    amount: int
    currency: str
    reference: str
    description: str
    success_url: str | None
    expires_at: int
    payment: str | None = None


@dataclass
class Payment:
    """A captured payment and what has been refunded of it."""

    id: str
    session: str
    amount: int
    currency: str
    refunded: int = 0


@dataclass
class Delivery:
    """One event and its delivery attempts to the webhook endpoint."""

    event: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False


class Sandbox:
    """The gateway's state and behaviour, independent of HTTP."""

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        webhook_url: str,
        public_url: str,
        max_attempts: int = DELIVERY_ATTEMPTS,
        first_retry_s: float = 0.5,
    ) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.public_url = public_url.rstrip("/")
        self.max_attempts = max_attempts
        self.first_retry_s = first_retry_s
        self.sessions: dict[str, Session] = {}
        self.payments: dict[str, Payment] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.client = httpx.AsyncClient(timeout=10)

    def authorised(self, request: Request) -> bool:
        """Whether the caller holds the secret API key."""
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode())

    def open_session(self, body: dict[str, Any]) -> dict[str, Any]:
        """A new checkout session for a fixed amount."""
        amount, currency = body.get("amount"), body.get("currency")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount < 10**15:
            raise ValueError("amount must be a whole number of minor units above 0")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise ValueError("currency must be an ISO 4217 code")
        session = Session(
            id=f"cs_{_token()}",
            amount=amount,
            currency=currency.upper(),
            reference=str(body.get("reference", ""))[:200],
            description=str(body.get("description", ""))[:200],
            success_url=_http_url(body.get("success_url")),
            expires_at=int(time.time()) + SESSION_LIFETIME_S,
        )
        self.sessions[session.id] = session
        return self.session_body(session)

    def session_body(self, session: Session) -> dict[str, Any]:
        """A session as the API shows it."""
        return {
            "id": session.id,
            "url": f"{self.public_url}/pay/{session.id}",
            "amount": session.amount,
            "currency": session.currency,
            "reference": session.reference,
            "expires_at": session.expires_at,
            "status": "complete" if session.payment else "open",
            "payment": session.payment,
        }

    def pay(self, session: Session, card_number: str) -> Payment:
        """Charge the card (a test card) for the session's amount and announce it."""
        payment = Payment(
            id=f"pay_{_token()}",
            session=session.id,
            amount=session.amount,
            currency=session.currency,
        )
        self.payments[payment.id] = payment
        session.payment = payment.id
        self.emit(
            "payment.succeeded",
            {
                "payment": payment.id,
                "checkout_session": session.id,
                "reference": session.reference,
                "amount": payment.amount,
                "currency": payment.currency,
                "card_last4": card_number[-4:],
            },
        )
        return payment

    def refund(self, body: dict[str, Any]) -> dict[str, Any]:
        """Refund part or all of a payment; the webhook confirms it."""
        payment = self.payments.get(str(body.get("payment")))
        if payment is None:
            raise LookupError("no such payment")
        amount = body.get("amount", payment.amount - payment.refunded)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError("amount must be a whole number of minor units above 0")
        if amount > payment.amount - payment.refunded:
            raise ValueError("amount is more than what is left to refund")
        payment.refunded += amount
        refund = {
            "id": f"re_{_token()}",
            "payment": payment.id,
            "reference": str(body.get("reference", ""))[:200],
            "amount": amount,
            "currency": payment.currency,
            "status": "pending",
        }
        self.emit("refund.succeeded", {**refund, "status": "succeeded", "refund": refund["id"]})
        return refund

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Record an event and start delivering it."""
        event_id = f"evt_{_token()}"
        event = {"id": event_id, "type": event_type, "created": int(time.time()), "data": data}
        self.deliveries[event_id] = Delivery(event)
        self.deliver_soon(event_id)

    def deliver_soon(self, event_id: str) -> None:
        """Deliver an event in the background, retrying until the endpoint takes it."""
        task = asyncio.get_running_loop().create_task(self.deliver(event_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def deliver(self, event_id: str) -> None:
        """POST the event, signed at the moment of sending; back off and retry on failure."""
        delivery = self.deliveries[event_id]
        body = json.dumps(delivery.event, separators=(",", ":")).encode()
        for attempt in range(self.max_attempts):
            if attempt:
                await asyncio.sleep(min(self.first_retry_s * 2 ** (attempt - 1), 60))
            signature = sign(self.webhook_secret, body, int(time.time()))
            try:
                answer = await self.client.post(
                    self.webhook_url,
                    content=body,
                    headers={"content-type": "application/json", SIGNATURE_HEADER: signature},
                )
                status: int | str = answer.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            delivery.attempts.append({"at": time.time(), "status": status})
            if isinstance(status, int) and 200 <= status < 300:
                delivery.delivered = True
                return


def _http_url(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) < 2000:
        return value
    return None


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": {"message": detail}}, status_code=status)


def create_app(sandbox: Sandbox) -> Starlette:
    """The sandbox's HTTP face: the API and the payer's page."""

    async def idempotent(request: Request, make: Any) -> JSONResponse:
        if not sandbox.authorised(request):
            return _problem(401, "invalid API key")
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            return _problem(400, str(exc))
        key = request.headers.get("idempotency-key")
        scoped = f"{request.url.path}:{key}"
        if key and scoped in sandbox.idempotent:
            status, kept = sandbox.idempotent[scoped]
            return JSONResponse(kept, status_code=status)
        try:
            status, answer = 200, make(body)
        except LookupError as exc:
            status, answer = 404, {"error": {"message": str(exc)}}
        except ValueError as exc:
            status, answer = 400, {"error": {"message": str(exc)}}
        if key:
            sandbox.idempotent[scoped] = (status, answer)
        return JSONResponse(answer, status_code=status)

    async def create_session(request: Request) -> Response:
        return await idempotent(request, sandbox.open_session)

    async def create_refund(request: Request) -> Response:
        return await idempotent(request, sandbox.refund)

    async def list_events(request: Request) -> Response:
        if not sandbox.authorised(request):
            return _problem(401, "invalid API key")
        return JSONResponse(
            [
                {"event": d.event, "delivered": d.delivered, "attempts": d.attempts}
                for d in sandbox.deliveries.values()
            ]
        )

    async def resend_event(request: Request) -> Response:
        if not sandbox.authorised(request):
            return _problem(401, "invalid API key")
        event_id = request.path_params["event_id"]
        if event_id not in sandbox.deliveries:
            return _problem(404, "no such event")
        sandbox.deliver_soon(event_id)
        return JSONResponse({"id": event_id, "resent": True}, status_code=202)

    async def payment_page(request: Request) -> Response:
        session = sandbox.sessions.get(request.path_params["session_id"])
        if session is None or session.expires_at < time.time():
            return HTMLResponse(_page("Payment link not found or expired.", None), 404)
        if session.payment is not None:
            return HTMLResponse(_page("This has been paid. Thank you.", None))
        return HTMLResponse(_page(None, session))

    async def pay(request: Request) -> Response:
        session = sandbox.sessions.get(request.path_params["session_id"])
        if session is None or session.expires_at < time.time():
            return HTMLResponse(_page("Payment link not found or expired.", None), 404)
        if session.payment is not None:
            return HTMLResponse(_page("This has already been paid.", None), 409)
        form = parse_qs((await request.body()).decode(errors="replace"))
        number = "".join(ch for ch in form.get("card_number", [""])[0] if ch.isdigit())
        if not 13 <= len(number) <= 19 or not luhn_valid(number):
            return HTMLResponse(_page("That card number is not valid.", session), 400)
        if number == DECLINED_CARD:
            return HTMLResponse(_page("Your card was declined.", session), 402)
        sandbox.pay(session, number)
        if session.success_url:
            return RedirectResponse(session.success_url, status_code=303)
        return HTMLResponse(_page("Payment received. Thank you.", None))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sandbox.client.aclose()

    return Starlette(
        routes=[
            Route("/v1/checkout_sessions", create_session, methods=["POST"]),
            Route("/v1/refunds", create_refund, methods=["POST"]),
            Route("/v1/events", list_events, methods=["GET"]),
            Route("/v1/events/{event_id}/resend", resend_event, methods=["POST"]),
            Route("/pay/{session_id}", payment_page, methods=["GET"]),
            Route("/pay/{session_id}", pay, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _page(message: str | None, session: Session | None) -> str:
    """The payer's page: the amount and a card form, or a message."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Sandbox payment</title>"
        "<meta name='referrer' content='no-referrer'></head><body>",
        "<h1>Sandbox payment gateway</h1>",
    ]
    if message:
        parts.append(f"<p>{html.escape(message)}</p>")
    if session is not None:
        parts.append(
            f"<p><strong>{html.escape(session.description)}</strong> "
            f"({session.amount} minor units of {html.escape(session.currency)})</p>"
            f"<form method='post' action='/pay/{html.escape(session.id)}'>"
            "<label>Card number <input name='card_number' autocomplete='cc-number'></label> "
            "<label>Expiry <input name='expiry' placeholder='12/34'></label> "
            "<label>CVC <input name='cvc' size='4'></label> "
            "<button type='submit'>Pay</button></form>"
            "<p>Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined.</p>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def main() -> None:
    """`python -m devstack.payment_sandbox --port P --webhook-url U`, secrets from the env."""
    import os

    parser = argparse.ArgumentParser(prog="python -m devstack.payment_sandbox")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--public-url", default=None)
    args = parser.parse_args()
    sandbox = Sandbox(
        api_key=os.environ["PAYMENT_SANDBOX_API_KEY"],
        webhook_secret=os.environ["PAYMENT_SANDBOX_WEBHOOK_SECRET"],
        webhook_url=args.webhook_url,
        public_url=args.public_url or f"http://127.0.0.1:{args.port}",
    )
    uvicorn.run(
        create_app(sandbox), host="127.0.0.1", port=args.port, access_log=False, log_level="info"
    )


if __name__ == "__main__":
    main()
