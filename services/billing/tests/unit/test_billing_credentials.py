"""The credentials billing makes are never taken for a card number by the NO-PAN refusal, which
reads every header and body (a hex CSRF token once was, one request in a thousand)."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from billing.auth.sessions import csrf_token_for
from shared.input_types import contains_card_number

# The same session ids every run: among them, hex tokens that passed for a card number.
SESSIONS = [f"session-{i}" for i in range(3000)]


def _hex_token(session: str) -> str:
    return hmac.new(session.encode(), b"quittance csrf", hashlib.sha256).hexdigest()


@pytest.mark.clause("NO-PAN")
def test_no_pan_session_csrf_tokens_never_look_like_a_card_number() -> None:
    assert any(contains_card_number(_hex_token(s)) for s in SESSIONS), "the sample has teeth"
    tokens = [csrf_token_for(session) for session in SESSIONS]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", token) for token in tokens), "base64url"
    assert [token for token in tokens if contains_card_number(token)] == []
