"""Payments' pure rules: splitting payments and refunds, minor units, webhook signatures."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal

import pytest

from billing.invoices.domain import InvoiceStatus, payment_status
from billing.payments.domain import (
    from_minor_units,
    split_payment,
    split_refund,
    to_minor_units,
)
from billing.payments.gateway import WebhookRejected
from billing.payments.sandbox import verify_signature

D = Decimal


def test_a_payment_settles_what_is_due_and_the_rest_is_credit() -> None:
    part = split_payment(D(30), D(100))
    assert (part.applied, part.credit) == (D(30), D(0))
    over = split_payment(D(130), D(100))
    assert (over.applied, over.credit) == (D(100), D(30))
    nothing_due = split_payment(D(50), D(0))  # a void or settled invoice: all of it is credit
    assert (nothing_due.applied, nothing_due.credit) == (D(0), D(50))


def test_a_refund_gives_back_unused_credit_before_reopening_the_invoice() -> None:
    split = split_refund(D(40), credit_available=D(30))
    assert (split.from_credit, split.from_invoice) == (D(30), D(10))
    none_left = split_refund(D(40), credit_available=D(-5))
    assert (none_left.from_credit, none_left.from_invoice) == (D(0), D(40))


@pytest.mark.parametrize(
    ("total", "credited", "paid", "status"),
    [
        (D(100), D(0), D(0), InvoiceStatus.ISSUED),
        (D(100), D(0), D(40), InvoiceStatus.PARTIALLY_PAID),
        (D(100), D(0), D(100), InvoiceStatus.PAID),
        (D(100), D(60), D(40), InvoiceStatus.PAID),
        (D(100), D(100), D(0), InvoiceStatus.ISSUED),
    ],
)
def test_an_invoices_status_follows_what_is_paid_and_credited(
    total: Decimal, credited: Decimal, paid: Decimal, status: InvoiceStatus
) -> None:
    assert payment_status(total, credited, paid) is status


def test_amounts_travel_to_gateways_in_whole_minor_units() -> None:
    assert to_minor_units(D("12.34"), "EUR") == 1234
    assert to_minor_units(D(500), "JPY") == 500
    assert to_minor_units(D("1.234"), "BHD") == 1234
    assert from_minor_units(1234, "EUR") == D("12.34")
    with pytest.raises(ValueError, match="minor unit"):
        to_minor_units(D("1.005"), "EUR")


def _header(secret: str, body: bytes, at: int) -> str:
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def test_a_sandbox_signature_holds_under_either_secret_while_one_is_rotated_out() -> None:
    body, now = b'{"id":"evt_1"}', 1_800_000_000
    for secret in ("old-secret", "new-secret"):
        verify_signature(
            body,
            _header(secret, body, now),
            ["old-secret", "new-secret"],
            tolerance_s=300,
            now=now,
        )
    refusals = {
        "another secret": _header("guessed", body, now),
        "too old": _header("new-secret", body, now - 301),
        "from the future": _header("new-secret", body, now + 301),
        "no timestamp": "v1=00",
        "no signature": f"t={now}",
        "a digit only to str.isdigit": "t=\u00b2,v1=00",
        "empty": "",
    }
    for header in refusals.values():
        with pytest.raises(WebhookRejected):
            verify_signature(body, header, ["new-secret"], tolerance_s=300, now=now)
    with pytest.raises(WebhookRejected):
        verify_signature(
            body + b" ", _header("new-secret", body, now), ["new-secret"], tolerance_s=300, now=now
        )
