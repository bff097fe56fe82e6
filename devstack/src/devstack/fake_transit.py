"""A stand-in for Vault Transit's HTTP API, in memory, for tests of the key-store adapter.

It implements only the endpoints `shared.keystore.VaultTransitKeyWrapper` uses, with the paths,
JSON bodies and status codes of the documented API
(https://developer.hashicorp.com/vault/api-docs/secret/transit). Passing tests against it show
the adapter speaks that API; they do not show a real Vault was used.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@dataclass
class TransitKey:
    """One named Transit key."""

    secret: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    deletion_allowed: bool = False


class FakeTransit:
    """Transit's create, read, config, delete, encrypt and decrypt endpoints on one mount."""

    def __init__(self, token: str, mount: str = "transit") -> None:
        self.token = token
        self.mount = mount
        self.keys: dict[str, TransitKey] = {}
        self.requests: list[tuple[str, str]] = []

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that answers as the Transit engine would."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""
        self.requests.append((request.method, request.url.path))
        if request.headers.get("X-Vault-Token") != self.token:
            return _errors(403, "permission denied")
        prefix = f"/v1/{self.mount}/"
        if not request.url.path.startswith(prefix):
            return _errors(404, "no handler for route")
        route = request.url.path.removeprefix(prefix).split("/")
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        match request.method, route:
            case "POST", ["keys", name]:
                if body.get("type", "aes256-gcm96") != "aes256-gcm96":
                    return _errors(400, "unsupported key type")
                self.keys.setdefault(name, TransitKey())
                return httpx.Response(204)
            case "GET", ["keys", name]:
                if name not in self.keys:
                    return httpx.Response(404, json={"errors": []})
                key = self.keys[name]
                data = {
                    "name": name,
                    "type": "aes256-gcm96",
                    "deletion_allowed": key.deletion_allowed,
                }
                return httpx.Response(200, json={"data": data})
            case "POST", ["keys", name, "config"]:
                if name not in self.keys:
                    return _errors(400, f"no existing key named {name} could be found")
                if "deletion_allowed" in body:
                    self.keys[name].deletion_allowed = bool(body["deletion_allowed"])
                return httpx.Response(204)
            case "DELETE", ["keys", name]:
                if name in self.keys and not self.keys[name].deletion_allowed:
                    return _errors(400, "deletion is not allowed for this key")
                self.keys.pop(name, None)
                return httpx.Response(204)
            case "POST", ["encrypt", name]:
                return self._encrypt(name, body)
            case "POST", ["decrypt", name]:
                return self._decrypt(name, body)
        return _errors(405, "unsupported operation")

    def _encrypt(self, name: str, body: dict[str, Any]) -> httpx.Response:
        try:
            plaintext = base64.b64decode(body["plaintext"], validate=True)
        except (KeyError, binascii.Error):
            return _errors(400, "missing or invalid plaintext (base64)")
        key = self.keys.setdefault(name, TransitKey())  # Transit upserts on encrypt by default
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(key.secret).encrypt(nonce, plaintext, None)
        ciphertext = f"vault:v1:{base64.b64encode(sealed).decode()}"
        return httpx.Response(200, json={"data": {"ciphertext": ciphertext, "key_version": 1}})

    def _decrypt(self, name: str, body: dict[str, Any]) -> httpx.Response:
        key = self.keys.get(name)
        if key is None:
            return _errors(400, "encryption key not found")
        ciphertext = str(body.get("ciphertext", ""))
        if not ciphertext.startswith("vault:v1:"):
            return _errors(400, "invalid ciphertext: no prefix")
        try:
            sealed = base64.b64decode(ciphertext.removeprefix("vault:v1:"), validate=True)
            plaintext = AESGCM(key.secret).decrypt(sealed[:12], sealed[12:], None)
        except (binascii.Error, InvalidTag, ValueError):
            return _errors(400, "cipher: message authentication failed")
        return httpx.Response(
            200, json={"data": {"plaintext": base64.b64encode(plaintext).decode()}}
        )


def _errors(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [message]})
