"""Webhooks' pure rules: which events go out, their public bodies, signatures, retry times."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from shared.crypto import personal_paths

SIGNATURE_HEADER = "Quittance-Signature"


class WebhookEventType(StrEnum):
    """The billing events an endpoint may ask for."""

    INVOICE_ISSUED = "invoice.issued"
    INVOICE_VOIDED = "invoice.voided"
    INVOICE_PAYMENT_STATUS_CHANGED = "invoice.payment_status_changed"
    CREDIT_NOTE_ISSUED = "credit_note.issued"
    PAYMENT_RECEIVED = "payment.received"
    PAYMENT_REFUNDED = "payment.refunded"


WEBHOOK_EVENT_TYPES = tuple(WebhookEventType)


def public_data(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """An event's data without its personal fields (names, emails, addresses, free text):
    what the contract marks personal never leaves, however the contract grows."""
    result = dict(data)
    result.pop("account_id", None)
    for path in personal_paths(model):
        _drop(result, path.split("."))
    return result


def _drop(data: Any, parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        for item in data.get(head[:-2]) or []:
            if isinstance(item, dict):
                _drop(item, rest)
    elif not rest:
        data.pop(head, None)
    elif isinstance(data.get(head), dict):
        _drop(data[head], rest)


def webhook_body(
    *, event_id: str, event_type: str, created_at: str, account_id: str, data: dict[str, Any]
) -> str:
    """The JSON body an endpoint receives: a stable id, the type, and the public data."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": created_at,
            "account_id": account_id,
            "data": data,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def signature(secrets: list[str], body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex>[,v1=<hex>]`: HMAC-SHA256 of "<t>.<body>" under each live secret
    (two while the old one is rotated out), so the receiver may check either."""
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    for secret in secrets:
        parts.append(f"v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}")
    return ",".join(parts)


def retry_delay(
    attempt: int, *, first_s: float, max_s: float, retry_after_s: float | None = None
) -> timedelta:
    """When to try again after the attempt-th failure: doubling from first_s up to max_s, with
    jitter so endpoints that failed together do not retry together; a 429's Retry-After is
    honoured up to max_s."""
    delay = min(first_s * 2 ** (attempt - 1), max_s) * random.uniform(0.8, 1.2)  # noqa: S311
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return timedelta(seconds=delay)


def is_retryable(status: int | None) -> bool:
    """Timeouts and connection errors (no status), 429 and 5xx are retried; the rest is final."""
    return status is None or status == 429 or status >= 500


def is_public_address(address: str) -> bool:
    """Whether an IP address is on the public internet (not private, loopback, link-local,
    multicast, reserved or shared): where a webhook may go (SSRF)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast
