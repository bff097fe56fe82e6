"""Ed25519 signing keys from settings, and verification with the public key alone."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.signing import SigningKey, SigningKeyError, key_id_of, verify

PAYLOAD = b'{"certificate_id":"c0ffee"}'


def test_a_signature_verifies_with_the_public_key_and_fails_for_any_changed_byte() -> None:
    key = SigningKey.generate()
    signature = key.sign(PAYLOAD)
    assert len(signature) == 64
    assert verify(key.public_pem(), PAYLOAD, signature)
    for position in range(len(PAYLOAD)):
        changed = bytearray(PAYLOAD)
        changed[position] ^= 0x20
        assert not verify(key.public_pem(), bytes(changed), signature)
    assert not verify(SigningKey.generate().public_pem(), PAYLOAD, signature)


def test_a_pem_private_key_from_the_settings_is_the_same_key() -> None:
    key = SigningKey.generate()
    loaded = SigningKey.from_setting(key.private_pem())
    assert loaded.key_id == key.key_id == key_id_of(key.public_pem())
    assert verify(key.public_pem(), PAYLOAD, loaded.sign(PAYLOAD))


def test_the_development_default_derives_the_same_key_every_start() -> None:
    first = SigningKey.from_setting("dev-only-certificate-signing-key")
    again = SigningKey.from_setting("dev-only-certificate-signing-key")
    other = SigningKey.from_setting("dev-only-another")
    assert first.key_id == again.key_id != other.key_id


def test_anything_but_an_ed25519_private_key_is_refused_at_start() -> None:
    with pytest.raises(SigningKeyError, match="PEM Ed25519"):
        SigningKey.from_setting("a passphrase is not a key")
    elliptic = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SigningKeyError, match="not Ed25519"):
        SigningKey.from_setting(elliptic.decode())
