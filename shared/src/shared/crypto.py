"""Crypto-shredding of events: personal fields are sealed with the account's key (TERMINATION).

Wire form of a sealed value: ``enc:v1:<key_id>:<base64url(nonce || ciphertext+tag)>``, the
AES-256-GCM encryption of the value's compact JSON. The associated data is the caller's ``aad``
(e.g. the event id and type) plus ``|`` and the field's concrete path (``lines[0].description``),
so a sealed value cannot be moved to another field, another line or another event.
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import functools
import json
import os
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, Union
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from shared.contracts.envelope import PERSONAL_DATA_MARK

WIRE_PREFIX = "enc:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

KeySource: TypeAlias = Callable[[str], Awaitable["DataKey"]] | Mapping[str, "DataKey"]


class FieldDecryptionError(Exception):
    """A personal field could not be opened; messages name paths and key ids, never values."""


class KeyDestroyedError(FieldDecryptionError):
    """The key a field was sealed with is gone: the account was purged."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"data key {key_id} is destroyed or unknown")
        self.key_id = key_id


class TamperedFieldError(FieldDecryptionError):
    """A sealed field failed authentication or is malformed."""

    def __init__(self, path: str) -> None:
        super().__init__(f"personal field {path} failed authentication")
        self.path = path


class ForeignKeyError(FieldDecryptionError):
    """A field was sealed with a key that belongs to another account: a forgery."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"data key {key_id} belongs to another account")
        self.key_id = key_id


class UnencryptedPersonalFieldError(FieldDecryptionError):
    """A personal field arrived in plaintext; consumers refuse it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"personal field {path} is not encrypted")
        self.path = path


@dataclass(frozen=True)
class DataKey:
    """An account's data key: 32 secret bytes and the id that sealed values name."""

    key_id: str
    secret: bytes = field(repr=False)
    account_id: UUID | None = None

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes")
        if not self.key_id or ":" in self.key_id:
            raise ValueError("a key id is non-empty and has no ':'")

    @functools.cached_property
    def cipher(self) -> AESGCM:
        """The AES-GCM object, built once per key: key setup is the costly part."""
        return AESGCM(self.secret)


def new_data_key(account_id: UUID | None = None) -> DataKey:
    """Return a fresh random data key with a random id, for an account."""
    return DataKey(key_id=os.urandom(16).hex(), secret=os.urandom(KEY_BYTES), account_id=account_id)


# --- which fields are personal -------------------------------------------------------------


@functools.cache
def personal_paths(model: type[BaseModel]) -> tuple[str, ...]:
    """Return the path of every field marked personal, e.g. ``customer.name``, ``lines[].x``."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(PERSONAL_DATA_MARK) is True:
            paths.append(name)
            continue
        nested = _nested_model(info.annotation)
        if nested is not None:
            inner, is_list = nested
            prefix = f"{name}[]" if is_list else name
            paths.extend(f"{prefix}.{path}" for path in personal_paths(inner))
        elif any(personal_paths(inner) for inner in _models_inside(info.annotation)):
            # Silently skipping them would put personal data on the wire in plaintext.
            raise TypeError(
                f"{model.__name__}.{name}: personal fields inside this type have no path syntax;"
                " mark the whole field with personal_data(...)"
            )
    return tuple(paths)


def _nested_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """Find the model inside ``Model``, ``list[Model]`` or ``Model | None``; flag the list."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _nested_model(candidates[0]) if len(candidates) == 1 else None
    if origin in (list, tuple, collections.abc.Sequence):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        inner = _nested_model(args[0]) if len(args) == 1 else None
        # A list of lists has no path syntax; no contract needs one.
        return (inner[0], True) if inner is not None and not inner[1] else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None


def _models_inside(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_inside(argument)


# A compiled path set: field name -> (is a list of objects, children; None marks a sealed leaf).
_Trie: TypeAlias = dict[str, tuple[bool, "_Trie | None"]]


@functools.lru_cache(maxsize=256)
def _compile(paths: tuple[str, ...]) -> _Trie:
    root: _Trie = {}
    for path in paths:
        node: _Trie | None = root
        *parents, leaf = path.split(".")
        for segment in parents:
            name = segment.removesuffix("[]")
            if node is None:
                break
            if name not in node:
                node[name] = (segment.endswith("[]"), {})
            node = node[name][1]  # None: an ancestor is sealed whole, which covers this path
        if node is not None:
            node[leaf.removesuffix("[]")] = (False, None)
    return root


def _leaves(data: Mapping[str, Any], trie: _Trie, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (concrete path, value) for every sealed-field position present in ``data``."""
    for name, (is_list, children) in trie.items():
        if name not in data:
            continue
        value = data[name]
        path = f"{prefix}{name}"
        if children is None:
            yield path, value
        elif is_list and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _leaves(item, children, f"{path}[{index}].")
        elif isinstance(value, Mapping):
            yield from _leaves(value, children, f"{path}.")


def _replace(
    data: Mapping[str, Any], trie: _Trie, change: Callable[[str, Any], Any], prefix: str = ""
) -> dict[str, Any]:
    """Return a copy of ``data`` with each leaf replaced; only containers on a path are copied."""
    result = dict(data)
    for name, (is_list, children) in trie.items():
        if name not in data:
            continue
        value = data[name]
        path = f"{prefix}{name}"
        if children is None:
            result[name] = change(path, value)
        elif is_list and isinstance(value, list):
            result[name] = [
                _replace(item, children, change, f"{path}[{index}].")
                if isinstance(item, Mapping)
                else item
                for index, item in enumerate(value)
            ]
        elif isinstance(value, Mapping):
            result[name] = _replace(value, children, change, f"{path}.")
    return result


# --- sealing and opening -------------------------------------------------------------------


def _associated_data(aad: bytes, path: str) -> bytes:
    return aad + b"|" + path.encode()


def encrypt_personal(
    data: Mapping[str, Any], paths: Sequence[str], key: DataKey, *, aad: bytes
) -> dict[str, Any]:
    """Return a copy of JSON-able ``data`` with every personal value sealed; None stays None."""
    cipher = key.cipher
    prefix = f"{WIRE_PREFIX}{key.key_id}:"

    def seal(path: str, value: Any) -> Any:
        if value is None:
            return None
        plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + cipher.encrypt(nonce, plaintext, _associated_data(aad, path))
        return prefix + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    return _replace(data, _compile(tuple(paths)), seal)


def _split(path: str, value: Any) -> tuple[str, bytes] | None:
    """Parse a wire value into (key id, nonce || ciphertext); None for null."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("enc:"):
        raise UnencryptedPersonalFieldError(path)
    parts = value.split(":", 3)
    if len(parts) != 4 or f"{parts[0]}:{parts[1]}:" != WIRE_PREFIX or not parts[2]:
        raise TamperedFieldError(path)
    try:
        sealed = base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4))
    except (binascii.Error, ValueError):
        raise TamperedFieldError(path) from None
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise TamperedFieldError(path)
    return parts[2], sealed


def key_ids_in(data: Mapping[str, Any], paths: Sequence[str]) -> set[str]:
    """Return the ids of the keys that sealed the personal values in ``data``."""
    found: set[str] = set()
    for _path, value in _leaves(data, _compile(tuple(paths))):
        if isinstance(value, str) and value.startswith(WIRE_PREFIX):
            key_id = value[len(WIRE_PREFIX) :].split(":", 1)[0]
            if key_id:
                found.add(key_id)
    return found


async def decrypt_personal(
    data: Mapping[str, Any], paths: Sequence[str], keys: KeySource, *, aad: bytes
) -> dict[str, Any]:
    """Return a copy of ``data`` with every sealed personal value opened; plaintext is refused."""
    trie = _compile(tuple(paths))
    # Check every field's form before any key lookup: plaintext is refused even for purged keys.
    # Each field is parsed once: the lookup below, then the opening, use the same parse.
    parsed = {path: _split(path, value) for path, value in _leaves(data, trie)}
    needed = {found[0] for found in parsed.values() if found is not None}
    resolved = {key_id: await _resolve(keys, key_id) for key_id in sorted(needed)}

    def open_(path: str, value: Any) -> Any:
        found = parsed[path]
        if found is None:
            return None
        key_id, sealed = found
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            plaintext = resolved[key_id].cipher.decrypt(
                nonce, ciphertext, _associated_data(aad, path)
            )
            return orjson.loads(plaintext)
        except (InvalidTag, ValueError):
            raise TamperedFieldError(path) from None

    return _replace(data, trie, open_)


async def _resolve(keys: KeySource, key_id: str) -> DataKey:
    if isinstance(keys, Mapping):
        key = keys.get(key_id)
        if key is None:
            raise KeyDestroyedError(key_id)
        return key
    return await keys(key_id)
