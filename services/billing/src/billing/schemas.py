"""The base of billing's API schemas, and of their partial updates."""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic
from pydantic import ConfigDict


class Schema(pydantic.BaseModel):
    """An API schema: unknown fields refused, readable from table rows."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


def optional(description: str) -> Any:
    """A field a patch may leave out; sent, it must be valid (null only where its type says)."""
    return pydantic.Field(default=None, description=description)


def _left_out_is_unchanged(schema: dict[str, Any]) -> None:
    # Left out means unchanged, not null: the schema shows no default a client could send.
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class Patch(Schema):
    """A partial update (RECTIFY): only the fields sent change; a nullable one sent null clears."""

    model_config = ConfigDict(json_schema_extra=_left_out_is_unchanged)

    # Fields that confirm the change (a password) rather than being part of it.
    CONFIRMATIONS: ClassVar[frozenset[str]] = frozenset()

    def changes(self) -> dict[str, Any]:
        """The fields sent, with their new values."""
        return self.model_dump(exclude_unset=True, exclude=set(self.CONFIRMATIONS))
