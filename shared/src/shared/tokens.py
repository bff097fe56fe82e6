"""Short-lived tokens one service signs and another checks with the signer's public key alone
(a JWT signed with Ed25519, RFC 9864's fully specified algorithm): how audit knows who a user
of billing is without billing ever calling audit."""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from joserfc.jwt import JWTClaimsRegistry

from shared.signing import SigningKey

ALGORITHMS = ["Ed25519"]  # nothing else is accepted: no "none", no HMAC with a public key


class TokenError(ValueError):
    """The token is not one the signer gave, for this audience, still valid."""


def issue_token(key: SigningKey, claims: dict[str, Any], *, audience: str, ttl_s: int) -> str:
    """A token carrying the claims for `audience`, valid for `ttl_s` seconds."""
    now = int(time.time())
    payload = {**claims, "aud": audience, "iat": now, "exp": now + ttl_s}
    header = {"alg": ALGORITHMS[0], "kid": key.key_id}
    return jwt.encode(header, payload, OKPKey.import_key(key.private_pem()), algorithms=ALGORITHMS)


class TokenReader:
    """Checks tokens against one signer's public key, for one audience."""

    def __init__(self, public_pem: bytes, *, audience: str, leeway_s: int = 5) -> None:
        self.key = OKPKey.import_key(public_pem)
        self.claims = JWTClaimsRegistry(
            leeway=leeway_s,
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    def read(self, token: str) -> dict[str, Any]:
        """The token's claims; `TokenError` for anything forged, expired or not for us."""
        try:
            decoded = jwt.decode(token, self.key, algorithms=ALGORITHMS)
            self.claims.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise TokenError(type(exc).__name__) from exc
        return dict(decoded.claims)
