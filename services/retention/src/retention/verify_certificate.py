"""Check a purge certificate offline: `python -m retention.verify_certificate certificate.json
certificate.sig signing-key.pem` exits 0 when the signature holds, 1 when it does not.

`openssl pkeyutl -verify -pubin -inkey signing-key.pem -rawin -in certificate.json -sigfile
certificate.sig` checks the same without Quittance's code (README, "Purge certificates").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shared.signing import SigningKeyError, key_id_of, verify


def check(payload: bytes, signature: bytes, public_pem: bytes) -> tuple[bool, str]:
    """Whether the certificate verifies, and what to tell the person checking it."""
    try:
        key_id = key_id_of(public_pem)
    except (SigningKeyError, ValueError) as exc:
        return False, f"not an Ed25519 public key: {exc}"
    if not verify(public_pem, payload, signature):
        return False, "INVALID: the signature does not match this certificate and key"
    try:
        document = json.loads(payload)
    except ValueError:
        return False, "INVALID: the signed bytes are not a certificate"
    if document.get("signing_key_id") != key_id:
        return False, f"INVALID: signed by key {document.get('signing_key_id')}, not {key_id}"
    return True, (
        f"valid: certificate {document['certificate_id']}, completed {document['completed_at']}, "
        f"signed by key {key_id}"
    )


def main(arguments: list[str]) -> int:
    """The command: three file paths in, a verdict out."""
    if len(arguments) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    payload, signature, public_pem = (Path(argument).read_bytes() for argument in arguments)
    valid, message = check(payload, signature, public_pem)
    print(message)
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
