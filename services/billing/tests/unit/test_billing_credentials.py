"""The credentials billing makes are never taken for a card number by the NO-PAN refusal, which
reads every header and body (a hex CSRF token once was, one request in a thousand)."""

from __future__ import annotations

import secrets

from billing.auth.second_factor import new_recovery_code
from billing.auth.service import new_api_key
from billing.auth.sessions import csrf_token_for
from shared.input_types import contains_card_number

SAMPLES = 3000  # with hex CSRF tokens, this many find a "card number" 19 times in 20


def test_no_pan_session_csrf_tokens_never_look_like_a_card_number() -> None:
    tokens = [csrf_token_for(secrets.token_urlsafe(32)) for _ in range(SAMPLES)]
    assert [token for token in tokens if contains_card_number(token)] == []


def test_no_pan_api_keys_and_recovery_codes_never_look_like_a_card_number() -> None:
    made = [new_api_key() for _ in range(SAMPLES)] + [new_recovery_code() for _ in range(SAMPLES)]
    assert [value for value in made if contains_card_number(value)] == []
