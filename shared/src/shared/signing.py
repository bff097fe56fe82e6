"""Ed25519 signatures a customer can check offline: a service's signing key, its public half,
and verification with nothing but the public key (as `openssl pkeyutl -verify` does it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.settings import DEVELOPMENT_SECRET_PREFIX

ALGORITHM = "Ed25519"


class SigningKeyError(ValueError):
    """The configured signing key is not an Ed25519 private key."""


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key; its id names the public half that verifies its signatures."""

    private: Ed25519PrivateKey

    @classmethod
    def from_setting(cls, value: str) -> SigningKey:
        """A PEM (PKCS#8) Ed25519 private key; a development default derives one from its text.

        Raises `SigningKeyError` for anything else, so a mistyped key fails at start.
        """
        if value.startswith(DEVELOPMENT_SECRET_PREFIX):
            # Development only (production refuses this prefix): the same text, the same key.
            seed = hashlib.sha256(value.encode()).digest()
            return cls(Ed25519PrivateKey.from_private_bytes(seed))
        try:
            key = serialization.load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError("the signing key must be a PEM Ed25519 private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"the signing key is {type(key).__name__}, not Ed25519")
        return cls(key)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    def private_pem(self) -> str:
        """The private key as PKCS#8 PEM (what the setting takes)."""
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM, which openssl reads."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def key_id(self) -> str:
        """The public key's id: the first 16 hex digits of the SHA-256 of its raw bytes."""
        return key_id_of(self.public_pem())

    def sign(self, payload: bytes) -> bytes:
        """The 64-byte signature of the payload."""
        return self.private.sign(payload)


def _public(public_pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"the public key is {type(key).__name__}, not Ed25519")
    return key


def key_id_of(public_pem: bytes) -> str:
    """The id of a PEM public key (see `SigningKey.key_id`)."""
    raw = _public(public_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


def verify(public_pem: bytes, payload: bytes, signature: bytes) -> bool:
    """Whether the signature is the public key's over exactly these bytes."""
    try:
        _public(public_pem).verify(signature, payload)
    except InvalidSignature:
        return False
    return True


def public_key_from_setting(value: str) -> bytes:
    """A PEM Ed25519 public key from a setting; a development default (the text another
    service's development signing key is derived from) gives that key's public half."""
    if value.startswith(DEVELOPMENT_SECRET_PREFIX):
        return SigningKey.from_setting(value).public_pem()
    pem = value.encode()
    _public(pem)  # SigningKeyError (a ValueError) for anything but an Ed25519 public key
    return pem
